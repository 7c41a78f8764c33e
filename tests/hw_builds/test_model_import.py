"""Imported models (issue 12): a Brevitas network written in the test with Brevitas' stock quantizers, exported by
Brevitas to QONNX, is imported (qonnx execution == Brevitas' forward on every image); bad imports are refused
before any long stage with one line naming the file and the node, and nothing is written."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from elsewhere_model import (BNN_PYNQ_PIXEL_BIAS, BNN_PYNQ_PIXEL_SCALE, CLASSES, PIXEL_BIAS, PIXEL_SCALE,
                             bnn_pynq_tfc, digits5, export_elsewhere_finn_onnx, export_elsewhere_qonnx, forward_pixels,
                             train_bnn_pynq, train_elsewhere)
from onnx import TensorProto, helper

from hw_builds.model_import import ImportRefusedError, check_import, import_model
from models.datasets import load_npz

REPO = Path(__file__).resolve().parents[2]
DECLARED = {"input_shape": [1, 28, 28], "pixel_scale": PIXEL_SCALE, "pixel_bias": PIXEL_BIAS}


@pytest.fixture(scope="module")
def elsewhere(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The 5-class set (digits 0-4 of the small real MNIST), the trained model and its QONNX file."""
    folder = tmp_path_factory.mktemp("elsewhere")
    data = digits5(load_npz(small_mnist))
    npz = folder / "digits5.npz"
    np.savez(npz, **{k: (v.astype(np.uint8) if k.startswith("y_") else v) for k, v in data.items()})
    model = train_elsewhere(data)
    return {"data": data, "npz": npz, "model": model, "onnx": export_elsewhere_qonnx(model, folder / "elsewhere.onnx")}


def test_qonnx_import_equals_brevitas_on_every_image(elsewhere: dict, tmp_path: Path) -> None:
    """Differential: Brevitas' own forward (pixels mapped in torch) against qonnx's execution of the imported
    graph (the declared mapping put in front of it as Mul / Add nodes), on every test image."""
    result = import_model(elsewhere["onnx"], elsewhere["npz"], tmp_path / "export", tmp_path / "train", DECLARED,
                          CLASSES, n_golden=20, val_size=50)
    assert result["format"] == "qonnx" and result["images"] == len(elsewhere["data"]["x_test"])
    brevitas = forward_pixels(elsewhere["model"], elsewhere["data"]["x_test"])
    with np.load(tmp_path / "export" / "test_logits.npz") as npz:
        assert str(npz["framework"]) == "import"
        assert np.array_equal(npz["y_pred"], brevitas.argmax(1))
        assert np.abs(npz["logits"] - brevitas).max() < 1e-4
    assert result["qonnx_top1_accuracy"] > 0.6  # chance is 0.2
    with np.load(tmp_path / "export" / "golden.npz") as golden:
        assert golden["x"].dtype == np.uint8 and golden["x"].shape == (20, 1, 28, 28)
    graph = onnx.load(str(tmp_path / "export" / "model.onnx")).graph
    first = next(n for n in graph.node if graph.input[0].name in n.input)  # the model now takes raw pixels
    second = next(n for n in graph.node if first.output[0] in n.input)
    assert (first.op_type, second.op_type) == ("Mul", "Add")
    import pandas as pd

    history = pd.read_csv(tmp_path / "train" / "history.csv")  # one row, epoch 0: the model as imported
    assert history["epoch"].tolist() == [0] and 0.6 < history["train_accuracy"][0] <= 1
    assert (tmp_path / "train" / "metrics.json").is_file()


def test_brevitas_examples_tfc_is_imported_and_built(elsewhere: dict, tmp_path: Path) -> None:
    """FINN's reference TFC_1W1A as Brevitas ships it (brevitas_examples.bnn_pynq: its own 2x - 1 input mapping,
    input QuantIdentity, TensorNorm output; code this project did not write), trained briefly, exported by Brevitas
    to QONNX: imported with the declared x = pixel / 255 (qonnx == Brevitas' forward on every test image), then
    FINN's front end (streamline, HW layers, exact thresholds) verified against that execution at every step."""
    import torch

    from hw_builds.frontend import build_frontend

    model = train_bnn_pynq(bnn_pynq_tfc(), elsewhere["data"], steps=20)
    path = export_elsewhere_qonnx(model, tmp_path / "tfc_1w1a.onnx")
    declared = {"input_shape": [1, 28, 28], "pixel_scale": BNN_PYNQ_PIXEL_SCALE, "pixel_bias": BNN_PYNQ_PIXEL_BIAS}
    result = import_model(path, elsewhere["npz"], tmp_path / "export", tmp_path / "train", declared, CLASSES,
                          n_golden=30, val_size=50)
    assert result["format"] == "qonnx" and result["qonnx_top1_accuracy"] > 0.4  # chance 0.2
    x = elsewhere["data"]["x_test"]
    with torch.no_grad():
        brevitas = model(torch.from_numpy(x[:, None].astype(np.float32)) * BNN_PYNQ_PIXEL_SCALE).numpy()
    with np.load(tmp_path / "export" / "test_logits.npz") as npz:
        assert np.array_equal(npz["y_pred"], brevitas.argmax(1)) and np.abs(npz["logits"] - brevitas).max() < 1e-4
    record = build_frontend(tmp_path / "export" / "model.onnx", tmp_path / "export" / "golden.npz",
                            tmp_path / "frontend", "bnn_pynq_tfc", progress=False)
    assert record["verified_steps"] == record["steps"]
    assert all(v["top1_equal"] + v.get("float_tie_images", 0) == 30 for v in record["verification"])


def _truncated(path: Path, out: Path) -> Path:
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return out


def _with_second_input(path: Path, out: Path) -> Path:
    proto = onnx.load(str(path))
    proto.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 784]))
    onnx.save(proto, str(out))
    return out


def _float_conv(out: Path) -> Path:
    """A QONNX graph whose Conv has float weights (no quantizer on them): binary input, float conv, then a
    quantized dense head."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas.nn import QuantIdentity, QuantLinear
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    class FloatConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
            self.conv = torch.nn.Conv2d(1, 4, 28, bias=False)
            self.bn = torch.nn.BatchNorm2d(4)
            self.act = QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
            self.fc = QuantLinear(4, CLASSES, bias=False,
                                  weight_quant=SignedBinaryWeightPerTensorConst.let(scaling_const=1.0))

        def forward(self, x):
            return self.fc(self.act(self.bn(self.conv(self.q(x)))).reshape(x.shape[0], -1))

    export_qonnx(FloatConv().eval(), torch.zeros(1, 1, 28, 28), str(out), dynamo=False)
    return out


BAD = [
    ("truncated file", lambda src, out: _truncated(src, out),
     DECLARED, "not a readable ONNX model"),
    ("two graph inputs", _with_second_input, DECLARED, "a second input ['mask'] has no data to come from"),
    ("input shape of another data set", lambda src, out: src, {**DECLARED, "input_shape": [1, 32, 32]},
     "has shape [1, 1, 28, 28], the declared input is [1, 1, 32, 32]"),
    ("float conv", lambda src, out: _float_conv(out), DECLARED,
     "not a network bnnflow builds: node Conv_0 (Conv): a float layer"),
]


@pytest.mark.parametrize(("what", "make", "declared", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_import_is_refused_naming_file_and_node(elsewhere: dict, tmp_path: Path, what: str, make, declared: dict,
                                                    fragment: str) -> None:
    bad = make(elsewhere["onnx"], tmp_path / "bad.onnx")
    out = tmp_path / "results"
    with pytest.raises(ImportRefusedError) as err:
        import_model(bad, elsewhere["npz"], out / "export", out / "train", declared, CLASSES)
    message = str(err.value)
    assert message.startswith(f"{bad}: ") and fragment in message and "\n" not in message, message
    assert not out.exists() or not any(out.rglob("*.*"))  # nothing half-written


def test_non_classification_output_and_unmappable_scale_are_refused(elsewhere: dict, tmp_path: Path) -> None:
    with pytest.raises(ImportRefusedError, match=r"has shape \[1, 5\], not \(1, 7\): not a classification output"):
        check_import(elsewhere["onnx"], [1, 28, 28], PIXEL_SCALE, PIXEL_BIAS, classes=7)
    stock = train_elsewhere(elsewhere["data"], steps=1, weight_scale=0.1)  # Brevitas' stock binary weight scale
    path = export_elsewhere_qonnx(stock, tmp_path / "stock.onnx")
    with pytest.raises(ImportRefusedError, match=r"stock\.onnx: not a network bnnflow builds: node MatMul_0 \(MatMul\) weights: weight scale is not 1"):
        check_import(path, [1, 28, 28], PIXEL_SCALE, PIXEL_BIAS, CLASSES)


def _finn_onnx(elsewhere: dict, tmp_path: Path, change=None) -> Path:
    """FINN's own QONNX -> FINN-ONNX conversion (ConvertQONNXtoFINN) of the test network, optionally changed."""
    from qonnx.core.modelwrapper import ModelWrapper

    path = export_elsewhere_finn_onnx(elsewhere["onnx"], tmp_path / "finn.onnx")
    if change is not None:
        model = ModelWrapper(str(path))
        change(model)
        model.save(str(path))
    return path


def test_finn_onnx_import_equals_qonnx_import(elsewhere: dict, tmp_path: Path) -> None:
    """Differential: the FINN-ONNX FINN writes from the QONNX file is detected as such, read into the same exact
    function (every threshold equal), and its qonnx execution equals the QONNX import's on every test image."""
    from hw_builds.exact_function import exact_forward, exact_network
    from hw_builds.model_import import qonnx_logits

    qonnx, fmt_q = check_import(elsewhere["onnx"], [1, 28, 28], PIXEL_SCALE, PIXEL_BIAS, CLASSES)
    finn, fmt_f = check_import(_finn_onnx(elsewhere, tmp_path), [1, 28, 28], PIXEL_SCALE, PIXEL_BIAS, CLASSES)
    assert (fmt_q, fmt_f) == ("qonnx", "finn-onnx")
    assert "MultiThreshold" in {n.op_type for n in finn.graph.node} and "BipolarQuant" not in {n.op_type for n in finn.graph.node}
    net_q, net_f = exact_network(qonnx), exact_network(finn)
    assert np.array_equal(net_q.input_thresholds, net_f.input_thresholds)
    for a, b in zip(net_q.layers, net_f.layers, strict=True):
        assert np.array_equal(a.weights, b.weights) and not b.integer_thresholds
        assert (a.thresholds is None and b.thresholds is None) or np.array_equal(a.thresholds, b.thresholds)
    x = elsewhere["data"]["x_test"][:, None]
    logits = qonnx_logits(finn, x, "finn-onnx", batch=len(x))
    assert np.array_equal(logits, qonnx_logits(qonnx, x, "qonnx", batch=len(x)))
    assert np.array_equal(exact_forward(net_f, x)["I_last"], logits)  # the exact function is FINN's execution


def test_finn_onnx_of_brevitas_examples_cnv_reads_as_its_qonnx(tmp_path: Path) -> None:
    """brevitas_examples' CNV_1W1A (8-bit Q1.7 input into convs, max pools, TensorNorm), exported to QONNX and
    converted by FINN to FINN-ONNX, where the input quantizer is a 255-step MultiThreshold followed by Add -128 and
    Mul 2^-7: both files read into the same exact function, and qonnx's execution of both is equal."""
    import warnings

    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    from hw_builds.exact_function import exact_network
    from hw_builds.model_import import qonnx_logits

    torch.manual_seed(0)
    model, _ = model_with_cfg("CNV_1W1A", pretrained=False)
    with torch.no_grad():  # batch norm statistics from a few random images, then evaluation mode
        model.train()(torch.rand(16, 3, 32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model.eval(), torch.zeros(1, 3, 32, 32), str(tmp_path / "cnv.onnx"), dynamo=False)
    finn_path = export_elsewhere_finn_onnx(tmp_path / "cnv.onnx", tmp_path / "cnv_finn.onnx")
    declared = ([3, 32, 32], BNN_PYNQ_PIXEL_SCALE, BNN_PYNQ_PIXEL_BIAS, 10)
    qonnx, _ = check_import(tmp_path / "cnv.onnx", *declared)
    finn, fmt = check_import(finn_path, *declared)
    assert fmt == "finn-onnx" and [n.op_type for n in finn.graph.node if n.op_type == "MultiThreshold"]
    net_q, net_f = exact_network(qonnx), exact_network(finn)
    assert net_f.input_quant.steps is not None and (net_f.input_quant.qmin, net_f.input_quant.qmax) == (-128, 127)
    assert net_f.input_quant.scale == net_q.input_quant.scale == Fraction(1, 128)
    assert np.array_equal(net_q.input_thresholds, net_f.input_thresholds)
    for a, b in zip(net_q.layers, net_f.layers, strict=True):
        assert np.array_equal(a.weights, b.weights) and a.pool == b.pool and a.conv == b.conv
        assert (a.thresholds is None and b.thresholds is None) or np.array_equal(a.thresholds, b.thresholds)
    x = np.random.default_rng(0).integers(0, 256, size=(8, 3, 32, 32), dtype=np.uint8)
    assert np.array_equal(qonnx_logits(finn, x, "finn-onnx", batch=8), qonnx_logits(qonnx, x, "qonnx", batch=8))


def _set_thresholds(value, out_scale: float = 2.0):
    def change(model) -> None:
        node = model.get_nodes_by_op_type("MultiThreshold")[1]  # the first hidden activation (after a batch norm)
        model.set_initializer(node.input[1], np.asarray(value, dtype=np.float32))
        next(a for a in node.attribute if a.name == "out_scale").f = out_scale
    return change


def _float_weights(model) -> None:
    from qonnx.core.datatype import DataType

    model.set_tensor_datatype(model.get_nodes_by_op_type("MatMul")[1].input[1], DataType["FLOAT32"])


FINN_BAD = [
    ("multi-bit activation", _set_thresholds([[-1.0, 0.0, 1.0]], out_scale=1.0),
     "MultiThreshold_1 (MultiThreshold): 3 threshold(s) per channel, output 1 * count + -1: a FINN-ONNX graph is read "
     "for bipolar activations only"),
    ("nonzero threshold after a batch norm", _set_thresholds([[0.25]]),
     "MultiThreshold_1 (MultiThreshold): threshold(s) [0.25] after a float batch norm: only 0"),
    ("float weights", _float_weights, "MatMul_1 (MatMul): a float layer: its weights 'MatMul_1_param0' are not a BipolarQuant / Quant of a "
     "constant (the weight quantizer is missing), nor a FINN-ONNX constant annotated BIPOLAR / TERNARY / INT2 (it is "
     "FLOAT32)"),
]


@pytest.mark.parametrize(("what", "change", "fragment"), FINN_BAD, ids=[b[0] for b in FINN_BAD])
def test_finn_onnx_outside_the_definition_is_refused_by_node(elsewhere: dict, tmp_path: Path, what: str, change,
                                                             fragment: str) -> None:
    path = _finn_onnx(elsewhere, tmp_path, change)
    with pytest.raises(ImportRefusedError) as err:
        check_import(path, [1, 28, 28], PIXEL_SCALE, PIXEL_BIAS, CLASSES)
    assert str(err.value).startswith(f"{path}: not a network bnnflow builds: node ") and fragment in str(err.value), str(err.value)


def test_cli_exits_2_with_one_line(elsewhere: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    run = subprocess.run([sys.executable, "-m", "hw_builds.model_import", "--model-file", str(bad), "--dataset",
                          str(elsewhere["npz"]), "--out-dir", str(tmp_path / "export"), "--metrics-dir",
                          str(tmp_path / "train"), "--declared", '{"input_shape": [1, 28, 28], "pixel_scale": 1, '
                          '"pixel_bias": 0}', "--classes", "5"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith(f"model_import: refused: {bad}: not a readable ONNX model")
    assert not (tmp_path / "export").exists()


QONNX_DATA = Path(__import__("qonnx").__file__).parent / "data" / "onnx"
MADE_ELSEWHERE = [
    # qonnx's own test models (made by other projects, shipped in the qonnx wheel): each is refused with its reason
    ("mnist-conv/model.onnx", [1, 28, 28], "no quantizer (QONNX Quant / BipolarQuant) and no FINN-ONNX MultiThreshold"),
    ("bsd300x3-espcn/subpixel/quant_model.onnx", [3, 128, 128], "not a classification output"),
    ("floatquant_exec/qonnx_act_weight_fp8.onnx", [1, 28, 28], "(FloatQuant): a floating-point (minifloat) quantizer"),
]


@pytest.mark.parametrize(("name", "shape", "reason"), MADE_ELSEWHERE, ids=[m[0].split("/")[0] for m in MADE_ELSEWHERE])
def test_models_made_elsewhere_are_tried_and_refused_with_the_reason(name: str, shape: list, reason: str) -> None:
    path = QONNX_DATA / name
    with pytest.raises(ImportRefusedError) as err:
        check_import(path, shape, 1.0, 0.0, classes=10)
    assert str(err.value).startswith(f"{path}: ") and reason in str(err.value), str(err.value)
