"""The board-independent FINN front end: its outputs, its verification, its errors, and the board graph it leads to.

The differential test runs FINN's usual order (TopK inserted before streamlining, as a one-stage build did)
and the front end + per-board top-1 head on the same QONNX export, and requires the two HW graphs to be
the same node for node, so the per-board builds are unchanged by the split.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from hw_builds.build_config import frontend_step_names
from hw_builds.compile import compile_finn
from hw_builds.custom_steps import UnsupportedModelError
from hw_builds.execute import FinnExecutionError, load_model
from hw_builds.frontend import FrontendError, build_frontend, load_frontend
from hw_builds.verify import VerificationError


def test_outputs_and_record(frontend_tfc):
    out, _ = frontend_tfc
    record = json.loads((out / "frontend.json").read_text())
    assert record["steps"] == record["verified_steps"] == frontend_step_names()
    assert record["model"] == "tfc_w1a1" and record["golden_samples_checked"] == 40
    assert set(record["seconds_per_step"]) == set(record["steps"])
    for step in record["steps"]:
        assert (out / "intermediate_models" / f"{step}.onnx").is_file()
    streamlined, after_step = load_model(out / "streamlined.onnx"), load_model(out / "intermediate_models" / "step_streamline.onnx")
    assert [n.op_type for n in streamlined.graph.node] == [n.op_type for n in after_step.graph.node]  # + exact thresholds
    assert "MultiThreshold" in [n.op_type for n in streamlined.graph.node]
    assert len(record["golden_float_tie_mask"]) == 40
    last = frontend_step_names()[-1]
    assert (out / "hw.onnx").read_bytes() == (out / "intermediate_models" / f"{last}.onnx").read_bytes()
    for r in record["verification"][1:]:  # every graph ends in float logits equal to Brevitas'
        assert r["output"] == "logits" and r["top1_equal"] == 40 and r["max_abs_logit_error"] < 1e-3
    ops = [n.op_type for n in load_model(out / "hw.onnx").graph.node]
    assert ops[-2:] == ["ElementwiseMul", "ElementwiseAdd"] and "LabelSelect" not in ops  # class scores out
    assert load_frontend(out)[1] == out / "hw.onnx"


def _graph(model) -> tuple:
    """Nodes (type, name, inputs, outputs, attributes), initializer values and FINN datatypes of a graph.

    Tensors are renamed by order of first use (FINN gives some tensors random names), so two graphs compare
    equal when they have the same nodes wired the same way with the same constants and datatypes.
    """
    g = model.graph
    names: dict[str, str] = {}
    for t in [i.name for i in g.input] + [t for n in g.node for t in (*n.input, *n.output)]:
        names.setdefault(t, f"t{len(names)}")
    nodes = [(n.op_type, n.name, tuple(names[t] for t in n.input), tuple(names[t] for t in n.output), n.domain,
              sorted((a.name, str(onnx.helper.get_attribute_value(a))) for a in n.attribute)) for n in g.node]
    inits = {names[i.name]: onnx.numpy_helper.to_array(i).tobytes() for i in g.initializer if i.name in names}
    types = {names[a.tensor_name]: sorted((e.key, e.value) for e in a.quant_parameter_tensor_names)
             for a in g.quantization_annotation if a.tensor_name in names}
    return nodes, inits, types, [names[o.name] for o in g.output]


def _finn_usual_order(onnx_path):
    """The one-stage flow as it was: TopK inserted right after tidy-up, before streamlining, then HW layers."""
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.insert_topk import InsertTopK

    from hw_builds.build_config import frontend_config
    from hw_builds.custom_steps import custom_steps
    from hw_builds.finn_env import import_build_steps

    lookup, ours = import_build_steps().build_dataflow_step_lookup, custom_steps(True)
    cfg = frontend_config(onnx_path.parent)
    model = load_model(onnx_path)
    for name in frontend_step_names():
        model = (ours.get(name) or lookup[name])(model, cfg)
        if name == "step_tidy_up":
            model = model.transform(InsertTopK(k=1)).transform(InferShapes()).transform(InferDataTypes())
    return model


def _random_export(name: str, tmp_path) -> object:
    from models.export import export_qonnx
    from models.topologies import build_model

    torch.manual_seed(3)
    model = build_model(name).eval()
    shape = (1, 3, 32, 32) if name.startswith("cnv") else (1, 1, 28, 28)
    return export_qonnx(model, tmp_path / "model.onnx", shape)


@pytest.mark.parametrize("name", ["fixture_tfc_w1a1", "tfc_w1a2", "tfc_w2a2", "cnv_w1a1"])
def test_board_graph_is_finns_usual_one(name, exported_tfc, tmp_path):
    """front end + step_insert_topk == TopK before streamlining, node for node (fixture and random models)."""
    from hw_builds.build_config import frontend_config
    from hw_builds.custom_steps import custom_steps, step_insert_topk
    from hw_builds.finn_env import import_build_steps

    onnx_path = exported_tfc[0] if name.startswith("fixture") else _random_export(name, tmp_path)
    lookup, ours = import_build_steps().build_dataflow_step_lookup, custom_steps(True)
    model = load_model(onnx_path)
    for step in frontend_step_names():
        model = (ours.get(step) or lookup[step])(model, frontend_config(tmp_path))
    headed = step_insert_topk(model, None)
    usual = _finn_usual_order(onnx_path)
    assert _graph(headed) == _graph(usual)
    assert [n.op_type for n in headed.graph.node][-1] == "LabelSelect"


def test_corrupt_onnx(exported_tfc, tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07not an onnx protobuf" * 10)
    with pytest.raises(FinnExecutionError, match=rf"{bad}: not a readable ONNX model"):
        build_frontend(bad, exported_tfc[1], tmp_path / "f", progress=False)
    assert not (tmp_path / "f" / "frontend.json").exists()


def test_onnx_without_quantizers(exported_tfc, tmp_path):
    """A float ONNX graph (no QONNX Quant nodes) is refused with the cause, naming the file."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.ones(7840, np.float32))
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [1, 784])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["global_in", "s"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["global_out"])],
        "float", [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("global_out", TensorProto.FLOAT, [1, 10])], [w, shape])
    path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(UnsupportedModelError, match=rf"{path}: the graph has no QONNX quantizer"):  # the admission check
        build_frontend(path, exported_tfc[1], tmp_path / "f", progress=False)


def test_golden_shape_must_fit_the_model(exported_tfc, tmp_path):
    golden = tmp_path / "golden.npz"
    np.savez(golden, x=np.zeros((2, 3, 32, 32), np.uint8), logits=np.zeros((2, 10), np.float32),
             labels=np.zeros(2, np.int64), indices=np.arange(2))
    with pytest.raises(UnsupportedModelError, match="does not take the golden pixels"):
        build_frontend(exported_tfc[0], golden, tmp_path / "f", progress=False)


def test_a_step_that_changes_the_network_is_named(exported_tfc, tmp_path, monkeypatch):
    """Sabotage one front-end step (flip the last layer's weights): it fails at that step, not later."""
    import hw_builds.custom_steps as cs

    original = cs.step_exact_thresholds

    def step_exact_thresholds(model, cfg):
        model = original(model, cfg)
        last = [n for n in model.graph.node if n.op_type == "MVAU"][-1]
        model.set_initializer(last.input[1], 1 - model.get_initializer(last.input[1]))
        return model

    monkeypatch.setattr(cs, "step_exact_thresholds", step_exact_thresholds)
    with pytest.raises(VerificationError, match=r"step step_exact_thresholds: top-1 differs from Brevitas on \d+/10"):
        build_frontend(exported_tfc[0], exported_tfc[1], tmp_path / "f", verify_samples=10, progress=False)
    assert not (tmp_path / "f" / "frontend.json").exists()


def test_a_board_build_refuses_a_missing_or_altered_front_end(frontend_tfc, tmp_path):
    import shutil

    with pytest.raises(FrontendError, match="frontend.json: front-end record not found; run the build_frontend rule"):
        compile_finn(tmp_path / "nothing", frontend_tfc[1], tmp_path / "b", "Pynq-Z1", progress=False)
    copy = tmp_path / "frontend"
    shutil.copytree(frontend_tfc[0], copy)
    with open(copy / "hw.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(FrontendError, match="hw.onnx: sha256 differs"):
        compile_finn(copy, frontend_tfc[1], tmp_path / "b", "Pynq-Z1", progress=False)
    assert not (tmp_path / "b" / "summary.json").exists()
