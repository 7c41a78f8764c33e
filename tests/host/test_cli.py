"""`python -m host validate` as a person runs it: from inside the package, exit status and message.

Each case runs the package's own copy of host/ (cwd = package, as on the board), so these also
prove that the copied code imports on its own in this environment.
"""

from __future__ import annotations

import subprocess
import sys

from deploy_helpers import build_package


def run_cli(cwd, *args):
    return subprocess.run([sys.executable, "-m", "host", "validate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_package_copy_of_host_is_the_one_imported(tmp_path) -> None:
    root = build_package(tmp_path)
    out = subprocess.run([sys.executable, "-c", "import host.validate as v; print(v.__file__)"], cwd=root,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(root / "host" / "validate.py")


def test_board_backend_without_device_exits_2(tmp_path) -> None:
    root = build_package(tmp_path, target="hardware")
    res = run_cli(root, "--package", ".", "--backend", "board", "--out", "validation.json")
    assert res.returncode == 2, res.stderr
    assert "no FPGA device" in res.stderr
    assert not (root / "validation.json").exists()


def test_tampered_package_exits_2_before_loading(tmp_path) -> None:
    root = build_package(tmp_path, target="hardware")
    with open(root / "xnor_model.npz", "ab") as f:
        f.write(b"\0")
    res = run_cli(root, "--package", ".", "--backend", "board")
    assert res.returncode == 2
    assert "xnor_model.npz: sha256" in res.stderr and "differs from the manifest" in res.stderr


def test_missing_package_and_bad_arguments(tmp_path) -> None:
    root = build_package(tmp_path)
    res = run_cli(root, "--package", str(tmp_path / "nope"))
    assert res.returncode == 2 and "no such package directory" in res.stderr
    res = run_cli(root, "--package", ".", "--backend", "fpga")
    assert res.returncode == 2 and "invalid choice" in res.stderr  # argparse usage error


def test_emulation_backend_is_not_opened_by_host_exits_2(tmp_path) -> None:
    """host/ imports nothing of the FINN side: the emulation is refused here (either environment) and the
    message names the FINN side's entry point that hands it in (tests/hw_builds/test_emulation.py runs it)."""
    root = build_package(tmp_path)
    res = run_cli(root, "--package", ".", "--backend", "emulation", "--out", "validation.json")
    assert res.returncode == 2 and "supplied by bnnflow's FINN side" in res.stderr
    assert "python -m hw_builds.validate_emulated" in res.stderr
    assert not (root / "validation.json").exists()


def test_issue17_case9_arguments_and_manifest_refused_before_work(tmp_path) -> None:
    """Counts below 1, an --out that is a directory and a manifest that is not a JSON object: one line, exit 2,
    no report written and no traceback (exit 1 means a disagreement or a failed budget only)."""
    root = build_package(tmp_path)
    for flag in ("--batch-size", "--latency-repeats", "--limit"):
        res = run_cli(root, "--package", ".", "--backend", "board", flag, "0")
        assert res.returncode == 2, res.stderr
        assert f"argument {flag}: expected an integer >= 1, got 0" in res.stderr
    (root / "out").mkdir()
    res = run_cli(root, "--package", ".", "--backend", "board", "--out", "out")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == "host validate: refused: --out out: is a directory, expected the report's file name"
    res = run_cli(root, "--package", ".", "--backend", "board", "--out", "no/such/folder/v.json")
    assert res.returncode == 2 and "refused: --out no/such/folder/v.json: folder no/such/folder does not exist" in res.stderr
    (root / "manifest.json").write_text("[1, 2, 3]")
    res = run_cli(root, "--package", ".", "--backend", "board", "--out", "v.json")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == "host validate: refused: manifest.json: package manifest must be a JSON object, found list"
    assert "Traceback" not in res.stderr and not (root / "v.json").exists()
