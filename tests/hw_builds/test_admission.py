"""Issue 17 cases 1-4: the one ONNX reader and the one admission check that every FINN stage starts from.

Each bad graph is the fixture's real tfc_w1a1 export with one edit, refused before any FINN step with
the file, the first offending node and why (hw_builds.admission.admit_qonnx); the exit status of a
refused input is 2 (host.refusal.exit_on_refusal, tested in tests/host/test_refusal.py).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from host.refusal import RefusedInput
from hw_builds.admission import admit_qonnx, explicit_defaults
from hw_builds.custom_steps import UnsupportedModelError
from hw_builds.execute import OnnxFileError, load_model


def _edited(exported_tfc, tmp_path: Path, name: str, edit) -> Path:
    model = onnx.load(str(exported_tfc[0]))
    edit(model.graph)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _conv_on_input(weights: np.ndarray, **attrs):
    def edit(graph) -> None:
        graph.initializer.append(numpy_helper.from_array(weights.astype(np.float32), "conv_w"))
        next(n for n in graph.node if n.name == "Mul_0").input[0] = "conv_out"
        graph.node.insert(0, helper.make_node("Conv", ["global_in", "conv_w"], ["conv_out"], name="Conv_in", **attrs))
    return edit


def _drop_first_weight_quantizer(graph) -> None:
    quant = next(n for n in graph.node if n.name == "BipolarQuant_0")
    next(n for n in graph.node if n.name == "MatMul_0").input[1] = quant.input[0]  # the float weights
    graph.node.remove(quant)


def _admit(path: Path):
    return admit_qonnx(load_model(path), path)


@pytest.mark.parametrize("cut", ["half", "empty"])
def test_case1_truncated_or_empty_model_onnx(exported_tfc, tmp_path, cut) -> None:
    raw = exported_tfc[0].read_bytes()
    path = tmp_path / "model.onnx"
    path.write_bytes(raw[: len(raw) // 2] if cut == "half" else b"")
    with pytest.raises(OnnxFileError) as err:
        load_model(path)
    cause = "(DecodeError: Error parsing message" if cut == "half" else "(the file is empty)"
    assert str(err.value).startswith(f"{path}: not a readable ONNX model {cause}")
    assert isinstance(err.value, RefusedInput)


def test_case2_float_3x3_conv_on_the_input(exported_tfc, tmp_path) -> None:
    path = _edited(exported_tfc, tmp_path, "conv3x3.onnx",
                   _conv_on_input(np.full((1, 1, 3, 3), 1 / 9), kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    with pytest.raises(UnsupportedModelError) as err:
        _admit(path)
    assert str(err.value) == (f"{path}: not a network bnnflow builds: node Conv_in (Conv): a float layer on the "
                              f"unquantized pixels (no input quantizer before it); every layer's input must be "
                              f"quantized codes")


def test_case3_matmul_without_its_weight_quantizer_is_named(exported_tfc, tmp_path) -> None:
    path = _edited(exported_tfc, tmp_path, "float_matmul.onnx", _drop_first_weight_quantizer)
    with pytest.raises(UnsupportedModelError) as err:
        _admit(path)
    assert str(err.value) == (f"{path}: not a network bnnflow builds: node MatMul_0 (MatMul): a float layer: its "
                              f"weights 'BipolarQuant_0_param0' are not a BipolarQuant / Quant of a constant (the "
                              f"weight quantizer is missing), nor a FINN-ONNX constant annotated BIPOLAR / TERNARY / "
                              f"INT2 (it is FLOAT32)")


def test_case3_float_1x1_conv_with_a_scalar_weight(exported_tfc, tmp_path) -> None:
    """The FINN build used to accept (streamlining folds it into the thresholds) what the XNOR export refused;
    both now start from the one admitted front end, and the admission refuses it."""
    path = _edited(exported_tfc, tmp_path, "conv1x1.onnx", _conv_on_input(np.full((1, 1, 1, 1), 0.5), kernel_shape=[1, 1]))
    with pytest.raises(UnsupportedModelError, match=r"conv1x1.onnx: not a network bnnflow builds: node Conv_in \(Conv\): "
                                                    r"a float layer on the unquantized pixels"):
        _admit(path)


def test_case4_conv_without_strides_and_pads_gets_the_onnx_defaults() -> None:
    """qonnx's LowerConvsToMatMul (FINN's step_streamline / step_convert_to_hw) reads kernel_shape, strides and pads
    without a default; the ONNX defaults written out keep the function and let it lower the conv."""
    import qonnx.core.onnx_exec as oxe
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    w = np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="Conv_0")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
                              [numpy_helper.from_array(w, "w")])
    model = ModelWrapper(helper.make_model(graph)).transform(InferShapes())
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'ints'"):
        copy.deepcopy(model).transform(LowerConvsToMatMul())
    x = {"x": np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)}
    before = oxe.execute_onnx(model, x)["y"]
    assert explicit_defaults(model) == ["Conv_0: kernel_shape", "Conv_0: strides", "Conv_0: pads", "Conv_0: dilations",
                                        "Conv_0: group"]
    lowered = model.transform(LowerConvsToMatMul())
    assert np.allclose(oxe.execute_onnx(lowered, x)["y"], before, atol=1e-6)
    assert explicit_defaults(model) == []


def test_the_export_itself_is_admitted(exported_tfc) -> None:
    model = load_model(exported_tfc[0])
    assert admit_qonnx(model, exported_tfc[0]) is model


@pytest.mark.parametrize("case", ["conv1x1", "float_matmul"])
def test_case3_the_front_end_refuses_before_any_step(exported_tfc, tmp_path, case) -> None:
    """The FINN build and the XNOR export both start from the front end (hw_builds.frontend): it admits the graph
    before any FINN step, so both accept and refuse the same graphs, with the same message; nothing is written."""
    from hw_builds.frontend import build_frontend

    edit = (_conv_on_input(np.full((1, 1, 1, 1), 0.5), kernel_shape=[1, 1]) if case == "conv1x1"
            else _drop_first_weight_quantizer)
    path = _edited(exported_tfc, tmp_path, f"{case}.onnx", edit)
    with pytest.raises(UnsupportedModelError) as direct:
        _admit(path)
    with pytest.raises(UnsupportedModelError) as err:
        build_frontend(path, exported_tfc[1], tmp_path / "frontend", verify_samples=2, progress=False)
    assert str(err.value) == str(direct.value) and isinstance(err.value, RefusedInput)
    assert not (tmp_path / "frontend").exists()
