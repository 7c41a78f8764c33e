"""FINN-ONNX read into the exact function (issue 12): a MultiThreshold straight on a layer's integer dot product
decides s_in * I >= t exactly (I >= ceil(t)), with no float ties. Property test over random graphs of that form
(bipolar weights, per-neuron float thresholds, many of them exactly integers so that I == t is met): the exact
function equals qonnx's execution on every image, and FINN's front end (streamline, HW layers, exact thresholds)
is verified against that execution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from hw_builds.exact_function import exact_forward, exact_network, near_boundary_images

SIDE, HIDDEN, CLASSES = 4, (9, 7), 3


def finn_onnx_mlp(seed: int, hidden: tuple[int, ...] = HIDDEN, fixed: dict | None = None):
    """A FINN-ONNX MLP on (1, 1, 4, 4) raw pixels: Mul / Add (x = p * 2/255 - 1), a sign MultiThreshold, then
    per hidden layer a BIPOLAR MatMul and a MultiThreshold with per-neuron thresholds straight on its dot
    product (out_dtype BIPOLAR, 2 * count - 1), then a last BIPOLAR MatMul (the class scores). ``fixed``: layer
    index -> (weights or None, thresholds or None) replacing the random ones."""
    fixed = fixed or {}
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    rng = np.random.default_rng(seed)
    nodes, inits, dtypes = [], [], {}

    def const(name: str, value: np.ndarray) -> str:
        inits.append(helper.make_tensor(name, TensorProto.FLOAT, value.shape, value.astype(np.float32).ravel()))
        return name

    def sign(inp: str, out: str, thresholds: np.ndarray) -> None:
        nodes.append(helper.make_node("MultiThreshold", [inp, const(f"{out}_thr", thresholds)], [out],
                                      domain="qonnx.custom_op.general", out_dtype="BIPOLAR", out_scale=2.0,
                                      out_bias=-1.0, name=f"{out}_node"))

    shape = const("shape", np.array([1, SIDE * SIDE]))
    inits[-1] = helper.make_tensor("shape", TensorProto.INT64, [2], [1, SIDE * SIDE])
    nodes += [helper.make_node("Reshape", ["pixels", shape], ["flat"], name="Reshape_0"),
              helper.make_node("Mul", ["flat", const("scale", np.array(2 / 255))], ["scaled"], name="Mul_0"),
              helper.make_node("Add", ["scaled", const("bias", np.array(-1.0))], ["mapped"], name="Add_0")]
    sign("mapped", "a0", np.zeros((1, 1)))
    width, inp = SIDE * SIDE, "a0"
    for li, out in enumerate((*hidden, CLASSES)):
        weights, thresholds = fixed.get(li, (None, None))
        w = const(f"w{li}", rng.choice([-1.0, 1.0], size=(width, out)) if weights is None else weights)
        dtypes[w] = "BIPOLAR"
        nodes.append(helper.make_node("MatMul", [inp, w], [f"i{li}"], name=f"MatMul_{li}"))
        if li < len(hidden):  # thresholds on I in [-width, width]: integers (ties I == t) and arbitrary floats
            t = np.where(rng.random(out) < 0.6, rng.integers(-width // 2, width // 2 + 1, out),
                         rng.uniform(-width / 2, width / 2, out)).reshape(out, 1)
            t = t if thresholds is None else np.asarray(thresholds, dtype=np.float64).reshape(out, 1)
            sign(f"i{li}", f"a{li + 1}", t)
            inp = f"a{li + 1}"
        width = out
    graph = helper.make_graph(nodes, "finn_onnx_mlp", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT,
                                                                                     [1, 1, SIDE, SIDE])],
                              [helper.make_tensor_value_info(f"i{len(hidden)}", TensorProto.FLOAT, [1, CLASSES])],
                              initializer=inits)
    model = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).transform(InferShapes())
    for name, dt in dtypes.items():
        model.set_tensor_datatype(name, DataType[dt])
    return model


def qonnx_exec(model, x: np.ndarray) -> np.ndarray:
    from qonnx.core.onnx_exec import execute_onnx

    return np.concatenate([execute_onnx(model, {"pixels": img[None].astype(np.float32)})[model.graph.output[0].name]
                           for img in x])


@pytest.mark.parametrize("seed", range(4))
def test_thresholds_on_the_dot_product_are_exact(seed: int) -> None:
    model = finn_onnx_mlp(seed)
    net = exact_network(model)
    assert [layer.integer_thresholds for layer in net.layers] == [True, True, False]
    x = np.random.default_rng(100 + seed).integers(0, 256, size=(200, 1, SIDE, SIDE), dtype=np.uint8)
    fwd = exact_forward(net, x)
    assert np.array_equal(fwd["I_last"], qonnx_exec(model, x))
    ties = [np.sum(fwd[f"layer{i}.I"][:, None, :] == np.asarray(net.layers[i].thresholds).T) for i in range(2)]
    assert sum(ties) > 0  # I == t is met: the inclusive side is what both decide
    assert not near_boundary_images(net, x).any()  # an integer against a float32 threshold: no float tie


def test_front_end_builds_and_verifies_a_finn_onnx_graph(tmp_path: Path) -> None:
    """FINN's front end on such a graph (the golden set: qonnx's execution of it): every step verified."""
    from hw_builds.frontend import build_frontend

    model = finn_onnx_mlp(7)
    source = tmp_path / "export" / "model.onnx"
    source.parent.mkdir()
    model.save(str(source))
    x = np.random.default_rng(7).integers(0, 256, size=(30, 1, SIDE, SIDE), dtype=np.uint8)
    logits = qonnx_exec(model, x).astype(np.float32)
    np.savez(tmp_path / "golden.npz", x=x, logits=logits, labels=logits.argmax(1), indices=np.arange(len(x)))
    record = build_frontend(source, tmp_path / "golden.npz", tmp_path / "frontend", "finn_onnx_mlp", progress=False)
    assert record["verified_steps"] == record["steps"]
    assert all(v["top1_equal"] == len(x) for v in record["verification"])


def test_finn_minimization_is_checked_with_its_mend(tmp_path: Path) -> None:
    """FINN's bit-width minimization sizes an XNOR layer's accumulator from its weights' signed range (INT5 for 20
    inputs, 10 of each sign per neuron) and clips its thresholds to that type, though the popcount runs 0..20: a
    popcount threshold of 18 becomes 16. Here the second layer's first neuron sees 17 agreements or more (17 of the
    first layer's neurons are always on / off in its weight pattern, 3 depend on the pixels and agree with it or
    not): at exactly 17 it stays off, and in the graph FINN's minimization leaves it fires, so that graph fails the
    check. compile_finn checks the minimization together with bnnflow's mend (thresholds restored, unsigned
    types), which passes."""
    from hw_builds.compile import compile_finn
    from hw_builds.execute import load_model
    from hw_builds.frontend import build_frontend
    from hw_builds.verify import VerificationError, check_step, load_golden

    rng = np.random.default_rng(5)
    w1 = np.stack([rng.permutation([1.0] * 10 + [-1.0] * 10) for _ in range(8)], axis=1)  # (20, 8), balanced
    pattern = w1[:, 0].copy()
    pattern[:3] *= -1  # at least 17 of 20 agree with neuron 0's weights
    w2 = rng.choice([-1.0, 1.0], size=(8, CLASSES))
    w2[0] = [1.0, -1.0, 1.0]  # that neuron moves the classes' scores apart, not by one common shift
    t1 = np.concatenate([[16.0], rng.integers(-4, 5, 7)])  # I >= 16 <=> popcount >= 18
    t0 = np.where(pattern > 0, -100.0, 100.0)  # always on / always off ...
    t0[:3] = 0.0  # ... but the 3 flipped ones, which depend on the pixels
    model = finn_onnx_mlp(5, hidden=(20, 8), fixed={0: (None, t0),
                                                     1: (w1, t1), 2: (w2, None)})
    source = tmp_path / "export" / "model.onnx"
    source.parent.mkdir()
    model.save(str(source))
    x = np.random.default_rng(5).integers(0, 256, size=(20, 1, SIDE, SIDE), dtype=np.uint8)
    logits = qonnx_exec(model, x).astype(np.float32)
    codes = np.where(exact_forward(exact_network(model), x)["layer0.I"][:, :3] >= 0, 1, -1)
    assert np.any(np.all(codes == pattern[:3], axis=1))  # some image puts the neuron at exactly 17 agreements
    golden = tmp_path / "golden.npz"
    np.savez(golden, x=x, logits=logits, labels=logits.argmax(1), indices=np.arange(len(x)))
    build_frontend(source, golden, tmp_path / "frontend", "clipped", progress=False)
    summary = compile_finn(tmp_path / "frontend", golden, tmp_path / "board", "Pynq-Z1", target_fps=1000,
                           verify_samples=20, progress=False)
    assert "step_mend_xnor_accumulators_initial" in summary["verified_steps"]
    assert "step_minimize_bit_width_initial" not in summary["verified_steps"]
    minimized = load_model(tmp_path / "board" / "intermediate_models" / "step_minimize_bit_width_initial.onnx")
    with pytest.raises(VerificationError, match="not an increasing affine image"):
        check_step("step_minimize_bit_width_initial", minimized, load_golden(golden))


def _node(model, name: str):
    return next(n for n in model.graph.node if n.name == name)


def _nhwc(model) -> None:
    _node(model, "a1_node").attribute.append(helper.make_attribute("data_layout", "NHWC"))


def _skip_layer(model) -> None:  # the second activation thresholds the input signs again: MatMul_0 is skipped
    _node(model, "a1_node").input[0] = "a0"


def _insert_before_threshold(op: str):
    def change(model) -> None:
        node = _node(model, "a1_node")
        inputs = ["i0", "half"] if op == "Mul" else ["i0"]
        if op == "Mul":
            model.graph.initializer.append(helper.make_tensor("half", TensorProto.FLOAT, [], [0.37]))
        node.input[0] = "between"
        model.graph.node.insert(list(model.graph.node).index(node), helper.make_node(op, inputs, ["between"],
                                                                                     name=f"{op}_between"))
    return change


OUTSIDE = [  # (what, change, hidden widths, fragment of the refusal)
    ("channels-last thresholds", _nhwc, HIDDEN, "a1_node (MultiThreshold): data_layout 'NHWC'"),
    ("a layer skipped, widths matching", _skip_layer, (16, 7), "a1_node (MultiThreshold): reads 'a0', not 'i0'"),
    ("Mul before the threshold", _insert_before_threshold("Mul"), HIDDEN,
     "Mul_between (Mul): stands between a hidden layer's dot product and its activation a1_node"),
    ("Relu before the threshold", _insert_before_threshold("Relu"), HIDDEN,
     "Relu_between (Relu): stands between a hidden layer's dot product and its activation a1_node"),
]


@pytest.mark.parametrize(("what", "change", "hidden", "fragment"), OUTSIDE, ids=[o[0] for o in OUTSIDE])
def test_graph_outside_the_chain_is_refused_by_node(what: str, change, hidden: tuple, fragment: str) -> None:
    """Review of issue 12: nodes are read as one chain (each reading the previous one's output), MultiThreshold's
    layout is its default NCHW, and what stands between a layer and its activation is named; each of these was
    accepted (or refused with a wrong reason) before and computed something else than qonnx's execution."""
    from hw_builds.exact_function import ExactFunctionError

    model = finn_onnx_mlp(3, hidden)
    change(model)
    with pytest.raises(ExactFunctionError) as err:
        exact_network(model)
    assert fragment in str(err.value), str(err.value)


def test_skipped_layer_import_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    """The CLI on a graph that skips a layer (shapes match, qonnx runs it): refused at import, exit 2, one line
    naming the file and the node, no export / train folder."""
    import subprocess
    import sys

    model = finn_onnx_mlp(3, (16, 7))
    _skip_layer(model)
    model.model.opset_import.append(helper.make_opsetid("qonnx.custom_op.general", 1))
    bad = tmp_path / "skipped.onnx"
    model.save(str(bad))
    npz = _digits3(tmp_path)
    run = subprocess.run([sys.executable, "-m", "hw_builds.model_import", "--model-file", str(bad), "--dataset",
                          str(npz), "--out-dir", str(tmp_path / "export"), "--metrics-dir", str(tmp_path / "train"),
                          "--declared", f'{{"input_shape": [1, {SIDE}, {SIDE}], "pixel_scale": {2 / 255}, '
                          '"pixel_bias": -1.0}', "--classes", str(CLASSES)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"model_import: refused: {bad}: ") and "MultiThreshold_1 (MultiThreshold): reads 'MultiThreshold_0_out0', not 'MatMul_0_out0'" in last, last
    assert not (tmp_path / "export").exists() and not (tmp_path / "train").exists()


def test_threshold_exactness_bound_counts_the_input_codes() -> None:
    """Review of issue 12: |I| <= sum |w| * max |code|. Bipolar weights summing to 2^22 are exact on bipolar codes
    but reach 2^29 on 8-bit input codes (|code| <= 128), past float32's exact integers: refused."""
    from fractions import Fraction

    from hw_builds.exact_function import ExactFunctionError, QuantSpec, _check_dot_product_exact

    wide = np.ones((2, 1 << 22), np.int64)
    _check_dot_product_exact(wide, QuantSpec("bipolar"), "node t (MultiThreshold)")  # |I| <= 2^22: exact
    with pytest.raises(ExactFunctionError, match=r"\|I\| up to 536870912\)"):
        _check_dot_product_exact(wide, QuantSpec("int", Fraction(1), -128, 127), "node t (MultiThreshold)")


def test_a_tensor_declared_twice_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Thresholds turned into a second graph input (declared twice: input and value_info): qonnx's ModelWrapper
    asserts on it; the import refuses it with one line naming the file instead of an AssertionError traceback."""
    from hw_builds.model_import import ImportRefusedError, check_import

    model = finn_onnx_mlp(3)
    model.model.opset_import.append(helper.make_opsetid("qonnx.custom_op.general", 1))
    model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == "a1_thr"))
    model.graph.input.append(helper.make_tensor_value_info("a1_thr", TensorProto.FLOAT, [9, 1]))
    model.graph.value_info.append(helper.make_tensor_value_info("a1_thr", TensorProto.FLOAT, [9, 1]))
    bad = tmp_path / "thr_as_input.onnx"
    import onnx

    onnx.save(model.model, str(bad))
    with pytest.raises(ImportRefusedError, match=rf"^{bad}: qonnx cannot read the model \(AssertionError: Multiple"):
        check_import(bad, [1, SIDE, SIDE], 2 / 255, -1.0, CLASSES)


def _digits3(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    npz = tmp_path / "d3.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (60, SIDE, SIDE), dtype=np.uint8), y_train=(np.arange(60) % 3).astype(np.uint8),
             x_test=rng.integers(0, 256, (30, SIDE, SIDE), dtype=np.uint8), y_test=(np.arange(30) % 3).astype(np.uint8))
    return npz


def test_import_checks_the_exact_function_against_qonnx_on_the_golden_images(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth behind the reader's checks: the import compares the exact function's top-1 with qonnx's on
    the golden images. A graph the reader got right imports; a reader that saw another function (simulated by
    swapping two classes of its result) is refused, naming the file and the first image, with nothing written."""
    import hw_builds.exact_function as ef
    from hw_builds.model_import import ImportRefusedError, import_model

    model = finn_onnx_mlp(3)
    model.model.opset_import.append(helper.make_opsetid("qonnx.custom_op.general", 1))
    source = tmp_path / "ok.onnx"
    model.save(str(source))
    declared = {"input_shape": [1, SIDE, SIDE], "pixel_scale": 2 / 255, "pixel_bias": -1.0}
    npz = _digits3(tmp_path)
    result = import_model(source, npz, tmp_path / "ok" / "export", tmp_path / "ok" / "train", declared, CLASSES,
                          n_golden=20)
    assert result["passed"] and (tmp_path / "ok" / "export" / "golden.npz").is_file()
    real = ef.exact_forward

    def swapped(net, x):
        out = dict(real(net, x))
        out["I_last"] = out["I_last"][:, [1, 0, 2]]
        return out

    monkeypatch.setattr(ef, "exact_forward", swapped)
    with pytest.raises(ImportRefusedError, match=rf"^{source}: the exact function read from the graph and qonnx's "
                                                 r"execution of it give another top-1 on \d+ of 20 golden images"):
        import_model(source, npz, tmp_path / "bad" / "export", tmp_path / "bad" / "train", declared, CLASSES,
                     n_golden=20)
    assert not (tmp_path / "bad").exists()
