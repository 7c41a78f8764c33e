"""A folding file's bytes and values are refused before FINN sees them: one line naming the file, exit 2.

A one-node graph (an MVAU_hls named as FINN names it) is enough: the check reads only names and attribute types."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from onnx import TensorProto, helper

from host.refusal import EXIT_REFUSED, exit_on_refusal
from hw_builds.custom_steps import step_check_folding_config


def one_mvau():
    from qonnx.core.modelwrapper import ModelWrapper

    node = helper.make_node("MVAU_hls", ["x", "w"], ["y"], name="MVAU_hls_0",
                            domain="finn.custom_op.fpgadataflow.hls", MW=4, MH=4, PE=1, SIMD=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return ModelWrapper(helper.make_model(graph))


@pytest.mark.parametrize(("content", "why"), [
    (json.dumps({"MVAU_hls_0": {"PE": 0}}), "layer MVAU_hls_0: PE must be an integer >= 1, got 0"),
    (json.dumps({"MVAU_hls_0": {"PE": "8"}}), 'layer MVAU_hls_0: PE must be an integer >= 1, got "8"'),
    (json.dumps({"MVAU_hls_0": {"SIMD": -4}}), "layer MVAU_hls_0: SIMD must be an integer >= 1, got -4"),
    (json.dumps({"MVAU_hls_0": {"PE": 2.0}}), "layer MVAU_hls_0: PE must be an integer >= 1, got 2.0"),
    (b"\xff\xfe{", "not readable JSON"),
    (json.dumps([1]), "must be a JSON object"),
])
def test_bad_folding_file_is_one_line_exit_2(tmp_path, capsys, content, why: str) -> None:
    path = tmp_path / "fold.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SystemExit) as err, exit_on_refusal("compile_finn"):
        step_check_folding_config(one_mvau(), SimpleNamespace(folding_config_file=path))
    assert err.value.code == EXIT_REFUSED
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"compile_finn: refused: {path}: ") and why in lines[0]


def test_good_folding_values_pass(tmp_path) -> None:
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"Defaults": {}, "MVAU_hls_0": {"PE": 2, "SIMD": 4, "ram_style": "block"}}))
    model = one_mvau()
    assert step_check_folding_config(model, SimpleNamespace(folding_config_file=path)) is model
