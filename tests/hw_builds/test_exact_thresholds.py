"""The network's exact function and its thresholds in FINN's graphs (issue 19's four failing cases + a property test).

Every case is a small Brevitas MLP with chosen batch-norm parameters, exported, streamlined and
converted by finn-plus, run through the XNOR reference, FINN's streamlined and HW graphs (python
execution) and Brevitas by ``verify_xnor``: the reference must equal both FINN graphs and the exact
function on every layer, and every difference from Brevitas must be a proven float tie.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from exact_models import (batch_norms, brevitas_bn_out, check_everything, dot_products, random_model,
                                          use_widths)

N_IMAGES = 120


@pytest.fixture(scope="module")
def mnist_x(small_mnist) -> np.ndarray:
    """(N, 28, 28) uint8: real MNIST test images."""
    with np.load(small_mnist) as npz:
        return npz["x_test"][:N_IMAGES]


def _most_common(values: np.ndarray) -> int:
    uniq, counts = np.unique(values, return_counts=True)
    return int(uniq[np.argmax(counts)])


# ------------------------------------------------------------------------------------ the definition

def test_brevitas_quantizers_are_the_definition():
    """sign(0) = +1 for the binary quantizer; half to even for 2-bit activations (torch.round)."""
    from brevitas.nn import QuantIdentity

    from models.quant import ActQuant

    y = torch.tensor([[-1.5, -0.5, -0.0, 0.0, 0.5, 1.5, 0.49999997, 0.50000006]])
    binary = QuantIdentity(act_quant=ActQuant, bit_width=1).eval()
    two = QuantIdentity(act_quant=ActQuant, bit_width=2).eval()
    with torch.no_grad():
        assert getattr(binary(y), "value", binary(y)).tolist()[0] == [-1, -1, 1, 1, 1, 1, 1, 1]
        assert getattr(two(y), "value", two(y)).tolist()[0] == [-1, 0, 0, 0, 0, 1, 0, 1]
    from hw_builds.exact_function import QuantSpec

    assert QuantSpec("bipolar").boundaries() == [(0, True)]
    assert QuantSpec("int", Fraction(1), -1, 1).boundaries() == [(Fraction(-1, 2), True), (Fraction(1, 2), False)]


def test_threshold_search_matches_brute_force():
    """neuron_thresholds (binary search, squares compared) = every I tested one by one in exact arithmetic."""
    from hw_builds.exact_function import QuantSpec, neuron_thresholds

    rng = np.random.default_rng(3)
    bounds = QuantSpec("int", Fraction(1), -1, 1).boundaries()
    for _ in range(200):
        gamma = Fraction(float(np.float32(int(rng.choice([-1, 1, 0])) * rng.uniform(0.01, 3))))
        var_eps = Fraction(float(np.float32(rng.uniform(0.1, 9))))
        mean = Fraction(int(rng.integers(-20, 20))) if rng.random() < 0.5 else Fraction(float(np.float32(rng.normal(0, 8))))
        beta = Fraction(int(rng.choice([-1, 1])), 2) if rng.random() < 0.5 else Fraction(float(np.float32(rng.normal(0, 1))))
        direction, thr = neuron_thresholds(gamma, beta, mean, var_eps, Fraction(1), bounds, -30, 30, "t")
        for (c, inc), t in zip(bounds, thr):
            def fires(i):  # y >= c with y = (i - mean) gamma / sqrt(var_eps) + beta, via high precision
                from decimal import Decimal, localcontext

                with localcontext() as ctx:
                    ctx.prec = 80
                    lhs = (i - mean) * gamma
                    y = (Decimal(lhs.numerator) / Decimal(lhs.denominator)) / (
                        Decimal(var_eps.numerator) / Decimal(var_eps.denominator)).sqrt() + (
                        Decimal(beta.numerator) / Decimal(beta.denominator))
                    cc = Decimal(c.numerator) / Decimal(c.denominator)
                    return y >= cc if inc else y > cc
            for i in range(-30, 31):
                want = fires(i)
                got = (i >= t) if direction > 0 else (i <= t)
                assert got == want, (gamma, beta, mean, var_eps, c, inc, i)


# ------------------------------------------------------------------------------------ the four cases

def test_near_tie_w1a1_784_129_10(monkeypatch, mnist_x, tmp_path):
    """Case 1: threshold -10.0000196-like on the dot product, gamma -1.698: FINN's float32 popcount
    threshold collapses to an integer; the exact one does not fire at the observed dot product."""
    use_widths(monkeypatch, (129,))
    model = random_model("tfc_w1a1", seed=11)
    x = mnist_x[:, None]
    d_obs = _most_common(dot_products(model, x)[0][:, 29])
    mean = np.float32(d_obs - 1.96e-5)
    with torch.no_grad():
        bn = batch_norms(model)[0]
        bn.weight[29], bn.bias[29], bn.running_mean[29], bn.running_var[29] = -1.698, 0.0, float(mean), 1.0
    assert float(np.float32((float(mean) + 784) / 2)) == (d_obs + 784) / 2  # FINN's float32 threshold collapses
    result = check_everything(model, "tfc_w1a1", mnist_x, tmp_path)
    layer = result["net"].layers[0]
    assert layer.direction[29] == -1 and layer.thresholds[29, 0] == d_obs - 1  # fires iff I <= d_obs - 1
    hit = result["exact"]["layer0.I"][:, 29] == d_obs
    assert hit.sum() >= 3 and np.all(result["exact"]["layer0.codes"][hit, 29] == -1)
    assert result["passed"] and result["float_ties"]["count"] == 0  # Brevitas agrees with the exact function here


def test_exact_tie_w1a1(monkeypatch, mnist_x, tmp_path):
    """Case 2: batch norm output exactly 0 at an observed dot product: exact (and hardware) +1; Brevitas'
    float32 batch norm says -1 there, which verify_xnor proves to be a float tie (margin 0)."""
    use_widths(monkeypatch, (64, 32))
    model = random_model("tfc_w1a1", seed=12)
    x = mnist_x[:, None]
    n = 5
    d_obs = _most_common(dot_products(model, x)[0][:, n])
    bn = batch_norms(model)[0]
    for gamma in np.linspace(0.37, 2.9, 40):  # a gamma / var whose float32 batch norm misses 0 below
        with torch.no_grad():
            bn.weight[n], bn.bias[n], bn.running_mean[n], bn.running_var[n] = float(gamma), 0.0, float(d_obs), 2.3
        at = dot_products(model, x)[0][:, n] == d_obs
        if (brevitas_bn_out(model, x, 0)[at, n] < 0).all():
            break
    else:
        pytest.fail("no gamma made PyTorch's float32 batch norm negative at an exact zero")
    result = check_everything(model, "tfc_w1a1", mnist_x, tmp_path)
    assert np.all(result["exact"]["layer0.codes"][at, n] == 1)  # sign(0) = +1
    ties = result["float_ties"]
    assert result["passed"] and ties["count"] == int(at.sum()) and ties["max_margin"] == 0.0
    assert {t["neuron"] for t in ties["first"]} == {n} and all(t["layer"] == 0 for t in ties["first"])


def test_half_way_rounding_w1a2(monkeypatch, mnist_x, tmp_path):
    """Case 3: a 2-bit pre-activation of exactly +0.5 and -0.5: half to even gives 0 both times
    (FINN's conversion of the Quant node rounds half up); hardware = reference = exact function."""
    use_widths(monkeypatch, (64, 32))
    model = random_model("tfc_w1a2", seed=13)
    x = mnist_x[:, None]
    dots = dot_products(model, x)[0]
    with torch.no_grad():
        bn = batch_norms(model)[0]
        for n, beta in ((3, 0.5), (7, -0.5)):
            bn.weight[n], bn.bias[n], bn.running_mean[n], bn.running_var[n] = 0.9, beta, float(_most_common(dots[:, n])), 4.0
    result = check_everything(model, "tfc_w1a2", mnist_x, tmp_path)
    for n in (3, 7):
        at = result["exact"]["layer0.I"][:, n] == _most_common(dots[:, n])
        assert at.sum() >= 2 and np.all(result["exact"]["layer0.codes"][at, n] == 0)
    assert result["passed"]
    assert all(t["layer"] == 0 and t["neuron"] in (3, 7) for t in result["float_ties"]["first"])


@pytest.mark.parametrize("name", ["tfc_w1a1", "tfc_w1a2", "tfc_w2a2"])
def test_zero_gamma(monkeypatch, mnist_x, tmp_path, name):
    """Case 4: gamma exactly 0: constant neurons build (no standalone Thresholding, no NaN threshold),
    get always-on / always-off thresholds, and verify (w2a2 included)."""
    use_widths(monkeypatch, (48, 32))
    model = random_model(name, seed=14)
    betas = {0: 0.3, 1: -0.3, 2: 0.0, 3: 0.5, 4: 0.7, 5: -0.5}
    with torch.no_grad():
        for bn in batch_norms(model):
            for n, beta in betas.items():
                bn.weight[n], bn.bias[n] = 0.0, beta
    result = check_everything(model, name, mnist_x, tmp_path)
    assert result["passed"]
    two_bit = name.endswith("a2")
    want = {n: (int(np.clip(np.round(b), -1, 1)) if two_bit else (1 if b >= 0 else -1)) for n, b in betas.items()}
    for li in range(2):
        codes = result["exact"][f"layer{li}.codes"]
        for n, code in want.items():
            assert np.all(codes[:, n] == code), (li, n)
    # the HW graph holds the exact always-on / always-off thresholds of those neurons
    from hw_builds.execute import load_model

    hw = load_model(tmp_path / "frontend" / "hw.onnx")
    mvau = [node for node in hw.graph.node if node.op_type.startswith("MVAU")][0]
    thr = hw.get_initializer(mvau.input[2])
    assert np.all(np.isfinite(thr)) and np.array_equal(thr, np.rint(thr))


# ------------------------------------------------------------------------------------ property test

def _inject_ties(model, x: np.ndarray, rng: np.random.Generator, two_bit: bool) -> list[tuple[int, int, str]]:
    """Put neurons of every hidden layer on a boundary at an observed dot product: exact, within 1e-5,
    and (2-bit) half-way; returns (layer, neuron, kind)."""
    injected = []
    for li, bn in enumerate(batch_norms(model)):
        dots = dot_products(model, x)[li]
        for n in rng.choice(bn.num_features, size=8, replace=False):
            kind = rng.choice(["exact", "near", "half"] if two_bit else ["exact", "near"])
            d = float(dots[rng.integers(len(dots)), n])
            gamma = float(rng.choice([-1, 1]) * rng.uniform(0.2, 2.5))
            beta = 0.0 if not two_bit else float(rng.choice([-0.5, 0.5]))
            mean = d if kind != "near" else d + float(rng.choice([-1, 1]) * rng.uniform(1e-6, 1e-5))
            with torch.no_grad():
                bn.weight[n], bn.bias[n], bn.running_mean[n] = gamma, beta, mean
                bn.running_var[n] = float(rng.uniform(0.5, 20))
            injected.append((li, int(n), str(kind)))
    return injected


@pytest.mark.parametrize("name,seed", [("tfc_w1a1", 21), ("tfc_w1a2", 22), ("tfc_w2a2", 23)])
def test_random_models_with_injected_ties(monkeypatch, mnist_x, tmp_path, name, seed):
    """Random models, ties injected at observed dot products: FINN HW = FINN streamlined = XNOR reference =
    exact function on every layer (verify_xnor + check_everything), and every Brevitas difference is a
    float tie; the injected neurons' thresholds are exactly the brute-force ones."""
    from hw_builds.exact_function import _bn_at_least

    use_widths(monkeypatch, (40, 24))
    rng = np.random.default_rng(seed)
    model = random_model(name, seed)
    injected = _inject_ties(model, mnist_x[:, None], rng, name.endswith("a2"))
    result = check_everything(model, name, mnist_x, tmp_path)
    assert result["passed"], result["first_difference"]
    assert result["top1_agree_with_xnor"]["finn_hw"]["agree"] == N_IMAGES
    for li, n, _kind in injected:
        layer = result["net"].layers[li]
        lo, hi = layer.i_range[n]
        g, b, m, v = (layer.bn[k][n] for k in ("gamma", "beta", "mean", "var"))
        for (c, inc), t in zip(layer.out_quant.boundaries(), layer.thresholds[n]):
            for i in range(int(lo), int(hi) + 1):
                fires = _bn_at_least((layer.in_quant.scale * i - m) * g, v + layer.eps, c - b, inc)
                assert fires == ((i >= t) if layer.direction[n] > 0 else (i <= t)), (li, n, i)


def test_unmappable_weights_are_refused_by_layer_and_neuron(monkeypatch, mnist_x, tmp_path):
    """FINN weights that are neither the trained row nor its negation, or a negation against the batch
    norm's direction, are refused naming the layer, the neuron and the cause."""
    from hw_builds.exact_thresholds import ExactThresholdError, set_exact_thresholds
    from hw_builds.execute import load_model

    use_widths(monkeypatch, (32,))
    model = random_model("tfc_w1a1", seed=15, gamma_range=(0.5, 2.0))  # every gamma positive: no negated rows
    result = check_everything(model, "tfc_w1a1", mnist_x[:20], tmp_path)
    hw = load_model(tmp_path / "frontend" / "hw.onnx")
    mvau = [node for node in hw.graph.node if node.op_type.startswith("MVAU")][0]
    w = hw.get_initializer(mvau.input[1])  # (MW, MH) in {0, 1}
    changed = w.copy()
    changed[0, 7] = 1 - changed[0, 7]
    hw.set_initializer(mvau.input[1], changed)
    with pytest.raises(ExactThresholdError, match="layer 0 neuron 7: FINN's weights are neither the trained weights"):
        set_exact_thresholds(hw, result["net"])
    negated = w.copy()
    negated[:, 3] = 1 - negated[:, 3]
    hw.set_initializer(mvau.input[1], negated)
    with pytest.raises(ExactThresholdError, match="layer 0 neuron 3: batch norm gamma is positive but FINN negated"):
        set_exact_thresholds(hw, result["net"])


def test_negative_output_scale_is_refused(monkeypatch, tmp_path):
    """TensorNorm with a negative scale would make top-1 the smallest dot product: refused, node named."""
    from hw_builds.exact_function import ExactFunctionError, exact_network_from_file
    from models.export import export_qonnx
    from models.tensor_norm import TensorNorm

    use_widths(monkeypatch, (16,))
    model = random_model("tfc_w1a1", seed=16)
    norm = next(m for m in model.modules() if isinstance(m, TensorNorm))
    with torch.no_grad():
        norm.weight.fill_(-1.0)
    path = export_qonnx(model, tmp_path / "model.onnx", (1, 1, 28, 28))
    with pytest.raises(ExactFunctionError, match=r"\(Mul\): the output scale is not a positive constant"):
        exact_network_from_file(path)


def test_per_class_output_scale_is_refused(monkeypatch, tmp_path):
    """A positive but per-class output scale reorders the classes: refused, node named."""
    from qonnx.core.modelwrapper import ModelWrapper

    from hw_builds.exact_function import ExactFunctionError, exact_network
    from models.export import export_qonnx

    use_widths(monkeypatch, (16,))
    path = export_qonnx(random_model("tfc_w1a1", seed=16), tmp_path / "model.onnx", (1, 1, 28, 28))
    model = ModelWrapper(str(path))
    exact_network(model)  # the export as it is: accepted
    mul = next(n for n in reversed(model.graph.node) if n.op_type == "Mul")
    model.set_initializer(mul.input[1], np.linspace(0.5, 2.0, 10, dtype=np.float32).reshape(1, 10))
    with pytest.raises(ExactFunctionError, match=r"\(Mul\): the output affine is not by one constant for every class"):
        exact_network(model)


def test_metadata_json_round_trip_keeps_everything_but_weights():
    """What step_record_exact_function stores in FINN's metadata comes back equal (CNV's NCHW input too)."""
    from hw_builds.exact_function import ExactLayer, ExactNetwork, QuantSpec

    layer = ExactLayer(weights=None, in_quant=QuantSpec("int", Fraction(1, 128), -128, 127),
                       out_quant=QuantSpec("bipolar"), bn={k: [Fraction(1, 3), Fraction(-2)] for k in
                                                           ("gamma", "beta", "mean", "var")},
                       eps=Fraction(1, 10**4), conv=(3, 1), pool=2, row_hash=["a", "b"],
                       i_range=np.array([[-5, 5], [-7, 7]]), direction=np.array([1, -1]),
                       thresholds=np.array([[1], [-2]]))
    last = ExactLayer(weights=None, in_quant=QuantSpec("bipolar"), out_quant=None, bn=None, row_hash=["c"],
                      i_range=np.array([[-3, 3]]))
    for nchw in (True, False):
        net = ExactNetwork((Fraction(2, 255), Fraction(-1)), QuantSpec("int", Fraction(1, 128), -128, 127),
                           np.arange(255), [layer, last], nchw_input=nchw)
        back = ExactNetwork.from_json(net.thresholds_json())
        assert back.nchw_input is nchw and back.pixel_scale == net.pixel_scale
        assert back.input_quant == net.input_quant and np.array_equal(back.input_thresholds, net.input_thresholds)
        for a, b in zip(back.layers, net.layers):
            assert (a.in_quant, a.out_quant, a.bn, a.eps, a.conv, a.pool, a.row_hash) == \
                   (b.in_quant, b.out_quant, b.bn, b.eps, b.conv, b.pool, b.row_hash)
            for key in ("i_range", "direction", "thresholds"):
                x, y = getattr(a, key), getattr(b, key)
                assert (x is None and y is None) or np.array_equal(x, y)


def test_max_pool_before_the_batch_norm_is_refused():
    """A max pool between a conv and its batch norm pools dot products, not codes: refused, not given to the
    layer before (the definition pools a layer's quantized activations)."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    from hw_builds.exact_function import ExactFunctionError, exact_network

    def bq(src, dst):
        return helper.make_node("BipolarQuant", [src, "one"], [dst], domain="qonnx.custom_op.general")

    nodes = [bq("x", "xq"), bq("w1", "w1q"), helper.make_node("Conv", ["xq", "w1q"], ["c1"], kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["n1"]), bq("n1", "a1"),
             bq("w2", "w2q"), helper.make_node("Conv", ["a1", "w2q"], ["c2"], kernel_shape=[3, 3]),
             helper.make_node("MaxPool", ["c2"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool_before_bn")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 2, 2, 2])])
    model = ModelWrapper(qonnx_make_model(graph))
    rng = np.random.default_rng(0)
    model.set_initializer("one", np.ones(1, np.float32))
    for name in ("w1", "w2"):
        model.set_initializer(name, rng.standard_normal((2, 2, 3, 3)).astype(np.float32))
    for name, value in (("g", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0)):
        model.set_initializer(name, np.full(2, value, np.float32))
    with pytest.raises(ExactFunctionError, match=r"pool_before_bn \(MaxPool\): max pool not directly on a layer's"):
        exact_network(model)
