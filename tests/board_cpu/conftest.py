"""Fixtures for the board CPUs under QEMU: one cached root file system per architecture.

Where QEMU, binfmt_misc, mmdebstrap or the root file system cannot be had, every test here FAILS with
the reason (pytest.fail, never a skip): CI must not report the ARM checks as passed when they did not run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "host"))  # deploy_helpers (tfc_settings)
from qemu_rootfs import ARCHES, BoardCpuUnavailable, ensure_rootfs  # noqa: E402


@pytest.fixture(scope="session", params=sorted(ARCHES), ids=lambda a: a)
def board_root(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """(architecture name, path of its cached Debian 12 root file system), built on first use."""
    try:
        return request.param, ensure_rootfs(request.param)
    except BoardCpuUnavailable as err:
        pytest.fail(f"board CPU {request.param} under QEMU unavailable: {err}", pytrace=False)

