"""The Larq proof's inputs, truncated or empty: one line naming the file, exit status 2 (not a traceback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from host.refusal import EXIT_REFUSED, exit_on_refusal
from hw_builds.larq_proof import prove_larq_export


def larq_dir(tmp_path: Path) -> Path:
    d = tmp_path / "larq"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"not read before the .npz inputs")
    np.savez(d / "test_logits.npz", y_true=np.zeros(4, np.int64), logits=np.zeros((4, 10), np.float32))
    np.savez(d / "golden.npz", x=np.zeros((2, 1, 28, 28), np.uint8), labels=np.zeros(2, np.int64),
             logits=np.zeros((2, 10), np.float32), indices=np.arange(2))
    return d


@pytest.mark.parametrize("bad", ["dataset_zero_byte", "dataset_truncated", "test_logits_truncated"])
def test_unreadable_proof_input_is_one_line_exit_2(bad: str, tmp_path: Path, capsys) -> None:
    d = larq_dir(tmp_path)
    dataset = tmp_path / "mnist.npz"
    np.savez(dataset, x_train=np.zeros((8, 28, 28), np.uint8), y_train=np.zeros(8, np.uint8),
             x_test=np.zeros((4, 28, 28), np.uint8), y_test=np.zeros(4, np.uint8))
    path = d / "test_logits.npz" if bad.startswith("test_logits") else dataset
    path.write_bytes(b"" if bad.endswith("zero_byte") else path.read_bytes()[:300])
    with pytest.raises(SystemExit) as err, exit_on_refusal("prove_larq_export"):
        prove_larq_export(d, dataset, tmp_path / "out")
    assert err.value.code == EXIT_REFUSED
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"prove_larq_export: refused: {path}: not a readable ")
    assert not (tmp_path / "out").exists()
