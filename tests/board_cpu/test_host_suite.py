"""host/'s own tests (tests/host) run inside the ARMv7 and AArch64 root file systems under QEMU.

Only what tests/host needs travels: host/, tests/conftest.py, tests/host/ and pyproject.toml (pytest's
settings and markers). The root has Debian's python3 3.11, numpy 1.24, pytest 7 and hypothesis, and
finn-plus-driver 1.6.1 with qonnx and bitstring from PyPI, so test_packing_board.py compares host/'s
packing with the driver's own functions byte for byte on the ARM CPU, as .venv-board does on x86-64
(all but the FINNDMAOverlay comparison, which needs pynq: see NEEDS_PYNQ).
The run must pass, and every skip must be one of the expected ones (what needs finn-plus, numba or a
board), checked from pytest's JUnit XML: nothing else may be skipped silently.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from qemu_rootfs import REPO, copy_host, run_in_rootfs, workdir_in

pytestmark = pytest.mark.board_cpu

# skip reasons that are right on an ARM root without finn-plus (build host only), numba and pynq (board image only)
EXPECTED_SKIPS = ("finn-plus is in the main environment only", "needs finn-plus (main environment)", "numba",
                  "pynq is in the board environment only")
# FINNDMAOverlay's fold/pack methods import pynq at module level (not installed in the roots: it needs a board
# image); the driver's packing functions they call are compared by the other tests of test_packing_board.py.
NEEDS_PYNQ = "tests/host/test_packing_board.py::test_settings_io_equals_finndmaoverlay_methods"


def _outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped: <reason>, from pytest's JUnit XML."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = child.tag
            elif child.tag == "skipped":
                status = f"skipped: {child.get('message', '')}"
        out[name] = status
    return out


def test_host_tests_pass_on_arm(board_root: tuple[str, Path]) -> None:
    arch_name, root = board_root
    with workdir_in(root) as (outside, inside):
        copy_host(outside)
        shutil.copytree(REPO / "tests" / "host", outside / "tests" / "host",
                        ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        shutil.copy2(REPO / "tests" / "conftest.py", outside / "tests" / "conftest.py")
        shutil.copy2(REPO / "pyproject.toml", outside / "pyproject.toml")
        res = run_in_rootfs(root, ["python3", "-m", "pytest", "tests/host", "-q", "-p", "no:cacheprovider",
                                   "--junitxml=junit.xml", "--basetemp=pytest-tmp", "--deselect", NEEDS_PYNQ], cwd=inside, timeout=3600)
        assert res.returncode == 0, f"{arch_name}: tests/host failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}"
        outcomes = _outcomes(outside / "junit.xml")
    assert len(outcomes) > 150, f"{arch_name}: only {len(outcomes)} tests collected"
    unexpected = {k: v for k, v in outcomes.items()
                  if v.startswith("skipped") and not any(reason in v for reason in EXPECTED_SKIPS)}
    assert not unexpected, f"{arch_name}: unexpected skips {unexpected}"
    board_packing = {k: v for k, v in outcomes.items() if "test_packing_board" in k}
    assert len(board_packing) == 10 and set(board_packing.values()) == {"passed"}, board_packing  # ten FINN types
