"""Golden logits and the front-end record that are bad input: one line naming the file, exit status 2 (not a
disagreement, exit 1, nor a traceback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from host.refusal import EXIT_REFUSED, exit_on_refusal


def refusal_line(capsys, call, stage: str = "compile_finn") -> str:
    """The one stderr line of ``call()`` run under exit_on_refusal, after asserting exit status 2."""
    with pytest.raises(SystemExit) as err, exit_on_refusal(stage):
        call()
    assert err.value.code == EXIT_REFUSED
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def golden_npz(path: Path, logits: np.ndarray) -> Path:
    n = len(logits)
    np.savez(path, x=np.zeros((n, 1, 28, 28), np.uint8), logits=logits.astype(np.float32),
             labels=np.zeros(n, np.int64), indices=np.arange(n))
    return path


def test_non_finite_golden_logits(tmp_path: Path, capsys) -> None:
    from hw_builds.verify import load_golden

    logits = np.zeros((4, 10))
    logits[1, 3], logits[2, 0] = np.nan, np.inf
    path = golden_npz(tmp_path / "golden.npz", logits)
    line = refusal_line(capsys, lambda: load_golden(path))
    assert line == f"compile_finn: refused: {path}: 'logits' has non-finite values (NaN or inf) in 2/4 rows"


def test_golden_class_count_differs_from_model(tmp_path: Path, capsys) -> None:
    from qonnx.core.modelwrapper import ModelWrapper

    from hw_builds.frontend import check_golden_fits
    from hw_builds.verify import load_golden

    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    model = ModelWrapper(helper.make_model(graph))
    path = golden_npz(tmp_path / "golden.npz", np.zeros((3, 7)))
    golden = load_golden(path)
    line = refusal_line(capsys, lambda: check_golden_fits(model, golden, Path("hw.onnx"), path))
    assert line == f"compile_finn: refused: {path}: 'logits' has 7 classes, the model hw.onnx outputs 10"
    check_golden_fits(model, load_golden(golden_npz(tmp_path / "ok.npz", np.zeros((3, 10)))), Path("hw.onnx"), path)


def test_non_utf8_frontend_record(tmp_path: Path, capsys) -> None:
    from hw_builds.frontend import load_frontend

    path = tmp_path / "frontend.json"
    path.write_bytes(b'{"hw_model": "hw\xff.onnx"}')
    line = refusal_line(capsys, lambda: load_frontend(tmp_path))
    assert line.startswith(f"compile_finn: refused: {path}: not readable JSON, expected a front-end record "
                           "(UnicodeDecodeError: ")
