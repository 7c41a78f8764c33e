"""The replay backend (host/replay.py): recorded accelerator answers checked against this CPU's XNOR reference.

Recordings here come from the test double of deploy_helpers (the real one, FINN's emulation, is
recorded in tests/board_cpu/test_validate_package.py and replayed on ARM). numpy only: these run in
both environments and inside the ARM root file systems.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import ReferenceAccelerator, build_package

from host.package import load_package
from host.replay import ReplayMismatch, record_replay
from host.validate import validate_package


def _record(root: Path, out: Path, flip: tuple[int, ...] = ()) -> Path:
    pkg = load_package(root)
    record_replay(pkg, ReferenceAccelerator(pkg.settings, pkg.xnor_model, flip=flip), out, batch_size=8)
    return out


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host", "validate", "--package", ".", "--backend", "replay", *args],
                          cwd=root, capture_output=True, text=True, timeout=120)


def _rewrite(path: Path, edit) -> Path:
    with np.load(path) as z:
        rec = {k: z[k].copy() for k in z.files}
    edit(rec)
    with open(path, "wb") as f:
        np.savez(f, **rec)
    return path


def test_replay_agrees_and_reports_the_recording(tmp_path: Path) -> None:
    # random model, random labels: no accuracy budget, so that exit 0 means agreement
    config = {"batch_size": 10, "latency_repeats": 5, "enforce_budgets": True, "budgets": {"accuracy_min_pct": 0.0}}
    root = build_package(tmp_path / "p", config=config)
    replay = _record(root, tmp_path / "replay.npz")
    report = validate_package(root, "replay", tmp_path / "v.json", replay=replay)
    assert report["agreement"]["exact"] and report["images"] == 37 and report["passed"]
    assert report["accelerator"]["latency"]["kind"] == "estimate"
    assert report["accelerator"]["latency"]["critical_path_cycles"] == 4140
    assert report["accelerator"]["recording"]["recorded_backend"] == "emulation"
    res = _cli(root, "--replay", str(replay), "--out", str(tmp_path / "cli.json"))
    assert res.returncode == 0 and (tmp_path / "cli.json").exists(), res.stderr


def test_a_changed_answer_is_a_disagreement(tmp_path: Path) -> None:
    root = build_package(tmp_path / "p")
    replay = _record(root, tmp_path / "replay.npz", flip=(11,))
    report = validate_package(root, "replay", replay=replay)
    assert report["agreement"]["differing_images"] == 1 and report["agreement"]["first_difference"]["position"] == 11
    res = _cli(root, "--replay", str(replay))
    assert res.returncode == 1 and "first at package position 11" in res.stderr


def test_bytes_not_in_the_recording_fail_as_a_packing_difference(tmp_path: Path) -> None:
    root = build_package(tmp_path / "p")
    replay = _rewrite(_record(root, tmp_path / "replay.npz"), lambda rec: rec["inputs"][4].__setitem__(..., 0))
    with pytest.raises(ReplayMismatch, match="this CPU packs differently"):
        validate_package(root, "replay", replay=replay)
    res = _cli(root, "--replay", str(replay), "--out", str(tmp_path / "v.json"))
    assert res.returncode == 1 and "packs differently" in res.stderr and not (tmp_path / "v.json").exists()


def test_recordings_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    root = build_package(tmp_path / "p")
    other = _record(build_package(tmp_path / "q", seed=1), tmp_path / "other.npz")
    res = _cli(root, "--replay", str(other))
    assert res.returncode == 2 and "recorded for another package" in res.stderr
    res = _cli(root)
    assert res.returncode == 2 and "needs --replay FILE" in res.stderr
    res = _cli(root, "--replay", str(tmp_path / "missing.npz"))
    assert res.returncode == 2 and "missing.npz: no such replay recording" in res.stderr
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    res = _cli(root, "--replay", str(tmp_path / "junk.npz"))
    assert res.returncode == 2 and "junk.npz: not a readable replay recording" in res.stderr
    good = _record(root, tmp_path / "good.npz")
    for name, data in (("empty.npz", b""), ("cut.npz", good.read_bytes()[: good.stat().st_size // 2])):
        (tmp_path / name).write_bytes(data)
        res = _cli(root, "--replay", str(tmp_path / name))
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert lines[0].startswith(f"host validate: refused: {tmp_path / name}: not a readable replay recording (")


def test_recording_needs_a_latency_estimate(tmp_path: Path) -> None:
    root = build_package(tmp_path / "p")
    pkg = load_package(root)
    acc = ReferenceAccelerator(pkg.settings, pkg.xnor_model)
    acc.latency_estimate = lambda: None
    with pytest.raises(ValueError, match="no latency estimate"):
        record_replay(pkg, acc, tmp_path / "r.npz")
    assert not (tmp_path / "r.npz").exists()
