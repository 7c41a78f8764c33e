"""The FINN side reads every .npz through host.refusal.read_npz: a truncated file is one line naming it (refused, exit 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from host.refusal import InputFileError, RefusedInput


def _truncated(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    path.write_bytes(path.read_bytes()[:300])
    return path


def test_truncated_golden_npz(tmp_path: Path) -> None:
    from hw_builds.verify import GoldenFileError, load_golden

    path = _truncated(tmp_path / "golden.npz", x=np.zeros((50, 1, 28, 28), np.uint8))
    with pytest.raises(GoldenFileError, match=r"golden.npz: not a readable golden file \(BadZipFile: ") as err:
        load_golden(path)
    assert isinstance(err.value, RefusedInput)
    with pytest.raises(GoldenFileError, match=r"nope.npz: golden file not found; made by the export stage"):
        load_golden(tmp_path / "nope.npz")


def test_truncated_or_incomplete_larq_logits(tmp_path: Path) -> None:
    from hw_builds.xnor_verify import load_framework_logits

    path = _truncated(tmp_path / "test_logits.npz", logits=np.zeros((100, 10), np.float32))
    with pytest.raises(InputFileError, match=r"test_logits.npz: not a readable test_logits.npz \(BadZipFile: "):
        load_framework_logits(path, np.zeros(100, np.int64))
    np.savez(path, logits=np.zeros((2, 10), np.float32))
    with pytest.raises(InputFileError, match=r"missing array\(s\) \['y_true'\] of a test_logits.npz"):
        load_framework_logits(path, np.zeros(2, np.int64))
