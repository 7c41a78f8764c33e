"""A zero-byte or truncated data set is refused by the Larq CLI: one line naming the file, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from larq_models.__main__ import main

pytestmark = pytest.mark.larq_env


@pytest.mark.parametrize("kind", ["zero_byte", "truncated"])
def test_bad_data_set_is_one_line_exit_2(kind: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "mnist.npz"
    np.savez(path, **{k: np.zeros((64, 28, 28) if k.startswith("x") else 64, np.uint8)
                      for k in ("x_train", "y_train", "x_test", "y_test")})
    path.write_bytes(b"" if kind == "zero_byte" else path.read_bytes()[:400])
    recipe = {"epochs": 1, "batch_size": 8, "optimizer": "adam", "lr": 0.02, "lr_min": 0.0, "schedule": "cosine",
              "warmup_epochs": 0, "weight_decay": 0.0, "loss": "cross_entropy", "dropout": 0.0, "val_size": 8,
              "seed": 0, "threads": 1, "overrides": {}}
    assert main(["train", "--model", "tfc_w1a1_larq", "--dataset", str(path), "--out-dir", str(tmp_path / "out"),
                 "--recipe", json.dumps(recipe)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"larq_models train: refused: {path}: not a readable prepared data set (")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
