"""Ternary weights (w2a2: {-1, 0, +1} as a +1 and a -1 mask) against plain int64 arithmetic, dense and conv.

The reference below uses no bits, no packing and no im2col: threshold counts as activation codes,
value = code + act_bias, integer weights from the two masks, a convolution as a sum of shifted
slices and max pooling as explicit windows. Every backend (numpy, the lookup-table popcount of the
board's numpy 1.x, numba where present) must give the same integer accumulators, codes and float32
logits, bit for bit, on random nets mixing ternary bit-plane, +1/-1 bit-plane and XNOR layers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.xnor import XnorReference, pack_bits, pack_planes, ternary_dot_numpy
from host.xnor_format import (FORMAT_VERSION, ConvGeometry, PoolGeometry, XnorFormatError, XnorLayer, XnorModel,
                              load_xnor_model, save_xnor_model)
from test_xnor import BACKENDS, make_engine  # tests/host is on sys.path, as for deploy_helpers
from test_xnor_conv import _pool


# --- the independent reference ------------------------------------------------------------------
def _count(values: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """#thresholds t with value >= t, thresholds (C or 1, T) per last-axis channel."""
    return (values[..., None] >= thr).sum(axis=-1).astype(np.int64)


def _conv(v: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """(N, H, W, C) values, (M, K) weights with k = (kh*KW + kw)*C + c -> (N, OH, OW, M), shifted slices."""
    (kh_n, kw_n), (sh, sw), (oh, ow) = geom.kernel, geom.stride, geom.out_dim
    wr = w.reshape(w.shape[0], kh_n, kw_n, geom.in_channels)
    acc = np.zeros((len(v), oh, ow, w.shape[0]), dtype=np.int64)
    for kh in range(kh_n):
        for kw in range(kw_n):
            part = v[:, kh : kh + sh * oh : sh, kw : kw + sw * ow : sw, :][:, :oh, :ow]
            acc += part @ wr[:, kh, kw, :].T
    return acc


def layer_acc(layer: XnorLayer, codes: np.ndarray) -> np.ndarray:
    """Accumulator of one layer on its input codes: popcount of agreements (XNOR) or signed dot product."""
    w = layer.weights_int().astype(np.int64)
    v = 2 * codes - 1 if layer.act_bits == 1 else codes + layer.act_bias
    d = _conv(v, w, layer.conv) if layer.conv is not None else v.reshape(len(v), -1) @ w.T
    return (d + layer.in_features) // 2 if layer.act_bits == 1 else d


def integer_reference(model: XnorModel, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """(input codes per layer, accumulators per layer, logits)."""
    px = x.reshape(len(x), *model.input_shape).astype(np.int64)
    px = px.transpose(0, 2, 3, 1) if model.is_conv else px.reshape(len(x), -1)
    codes = _count(px, model.input_thresholds.astype(np.int64))
    ins, accs = [], []
    for layer in model.layers:
        ins.append(codes)
        acc = layer_acc(layer, codes)
        accs.append(acc)
        if layer.thresholds is not None:
            codes = _count(acc, layer.thresholds.astype(np.int64))
            if layer.pool is not None:
                codes = _pool(codes, layer.pool)
    logits = accs[-1].astype(np.float32) * model.output_mul + model.output_add
    return ins, accs, logits


# --- random nets ---------------------------------------------------------------------------------
def ternary_masks(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, K) int {-1, 0, 1} -> packed (+1 mask, -1 mask) as the format stores them."""
    pack = lambda b: np.packbits(b.astype(np.uint8), axis=1, bitorder="little")  # noqa: E731
    return pack(w > 0), pack(w < 0)


def random_layer(rng: np.random.Generator, k: int, m: int, act_bits: int, act_bias: int, ternary: bool,
                 conv: ConvGeometry | None = None) -> XnorLayer:
    if ternary:
        p_zero = rng.choice([0.0, 0.3, 0.7, 1.0])  # none, some, most or all weights zero
        w = rng.choice(np.array([-1, 1]), size=(m, k)) * (rng.random((m, k)) >= p_zero)
        pos, neg = ternary_masks(w)
        return XnorLayer(k, m, pos, None, act_bits=act_bits, act_bias=act_bias, conv=conv, weight_bits=2,
                         weights_neg=neg)
    packed = np.packbits(rng.integers(0, 2, size=(m, k), dtype=np.uint8), axis=1, bitorder="little")
    return XnorLayer(k, m, packed, None, act_bits=act_bits, act_bias=act_bias, conv=conv)


def _thresholds_from(rng: np.random.Generator, acc: np.ndarray, t: int, per_channel: bool) -> np.ndarray:
    """T sorted thresholds per channel row drawn from the accumulators the layer really produces (so
    the codes vary), shifted by up to one, a few moved out of reach (constant codes)."""
    flat = acc.reshape(-1, acc.shape[-1])  # (N * pixels, M)
    rows = flat.shape[1] if per_channel else 1
    channel = np.arange(rows)[:, None] if per_channel else rng.integers(0, flat.shape[1], size=(1, t))
    picks = flat[rng.integers(0, len(flat), size=(rows, t)), channel] + rng.integers(-1, 2, size=(rows, t))
    far = rng.random(picks.shape) < 0.05
    picks = np.where(far, rng.choice(np.array([-10**6, 10**6]), size=picks.shape), picks)
    return np.sort(picks, axis=1).astype(np.int32)


def acc_of(model: XnorModel, i: int, x: np.ndarray) -> np.ndarray:
    """The reference's accumulators of layer i (the layers before it complete), for choosing its thresholds."""
    m = model.layers[i].out_features
    prefix = XnorModel(model.input_thresholds, model.layers[: i + 1], np.ones(m, np.float32), np.zeros(m, np.float32),
                       model.input_shape)
    return integer_reference(prefix, x)[1][-1]


def random_net(rng: np.random.Generator, x_count: int, conv: bool) -> tuple[XnorModel, np.ndarray]:
    """A random net (conv layers then dense, or an MLP) of ternary / +1-1 / XNOR layers, with images."""
    if conv:
        c, h, w = int(rng.integers(1, 4)), int(rng.integers(5, 10)), int(rng.integers(5, 10))
        input_shape: tuple[int, ...] = (c, h, w)
        n_conv = int(rng.integers(1, 3))
    else:
        input_shape = (int(rng.integers(1, 150)),)
        n_conv = 0
    n_dense = int(rng.integers(1, 3))
    depth = n_conv + n_dense
    bits = [int(rng.choice([1, 2, 2, 3])) for _ in range(depth)]
    bits[0] = int(rng.choice([1, 2, 8]))  # the input code: 8 bits as CNV's Q1.7 input
    ternary = [b > 1 and rng.random() < 0.75 for b in bits]
    biases = [0 if b == 1 else int(rng.integers(-(2 ** (b - 1)), 1)) for b in bits]
    x = rng.integers(0, 256, size=(x_count, *input_shape), dtype=np.uint8)
    c0 = input_shape[0]  # image channels (conv) or input values (MLP)
    t0 = 1 if bits[0] == 1 else int(rng.integers(1, 2 ** bits[0]))
    input_thr = np.sort(rng.integers(0, 257, size=(c0 if rng.random() < 0.5 else 1, t0)), axis=1).astype(np.int32)
    model = XnorModel(input_thresholds=input_thr, layers=[], output_mul=np.ones(1, np.float32),
                      output_add=np.zeros(1, np.float32), input_shape=input_shape)
    shape: tuple[int, ...] = (*input_shape[1:], input_shape[0]) if conv else input_shape
    for i in range(depth):
        last = i == depth - 1
        m = int(rng.integers(1, 12)) if last else int(rng.integers(1, 70))
        geom = None
        if i < n_conv:
            kh, kw = (int(rng.integers(1, min(3, d) + 1)) for d in shape[:2])
            stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
            geom = ConvGeometry(in_dim=shape[:2], in_channels=shape[2], kernel=(kh, kw), stride=stride)
            k = geom.window
        else:
            k = int(np.prod(shape))
        layer = random_layer(rng, k, m, bits[i], biases[i], ternary[i], geom)
        model.layers.append(layer)
        if not last:
            acc = acc_of(model, i, x)
            t = 1 if bits[i + 1] == 1 else int(rng.integers(1, 2 ** bits[i + 1]))
            layer.thresholds = _thresholds_from(rng, acc, t, per_channel=bool(rng.random() < 0.7))
            if geom is not None and min(geom.out_dim) >= 2 and rng.random() < 0.5:
                layer.pool = PoolGeometry(kernel=(2, 2), stride=(int(rng.integers(1, 3)),) * 2)
        shape = layer.out_shape()
    m_last = model.layers[-1].out_features
    model.output_mul = rng.uniform(0.1, 2.0, size=m_last).astype(np.float32)
    model.output_add = rng.normal(size=m_last).astype(np.float32)
    return model, x


# --- the dot product itself ----------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 200), m=st.integers(1, 40), n=st.integers(1, 20),
       bits=st.integers(2, 8))
def test_ternary_dot_equals_integer_dot(seed: int, k: int, m: int, n: int, bits: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**bits, size=(n, k))
    w = rng.integers(-1, 2, size=(m, k))
    bias = int(rng.integers(-(2**bits), 3))
    want = (codes + bias) @ w.T
    planes, w_pos, w_neg = pack_planes(codes, bits), pack_bits(w > 0), pack_bits(w < 0)
    for use_table in (None, True):
        got = ternary_dot_numpy(planes, w_pos, w_neg, bias, use_table=use_table)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want, err_msg=f"use_table={use_table}")
    if "numba" in BACKENDS:
        from host import xnor_numba

        got = xnor_numba.ternary_dot(planes, np.ascontiguousarray(w_pos.T), np.ascontiguousarray(w_neg.T), bias)
        np.testing.assert_array_equal(got, want, err_msg="numba")


def test_ternary_dot_extremes() -> None:
    """All-zero weights give act_bias * 0 = 0; all +1 / all -1 give +-sum of values; 255-codes do not overflow."""
    k, n = 2304, 3  # CNV's widest window
    codes = np.full((n, k), 255)
    codes[1] = 0
    w = np.stack([np.zeros(k, int), np.ones(k, int), -np.ones(k, int)])
    for bias in (-128, 0, 5):
        want = (codes + bias) @ w.T
        got = ternary_dot_numpy(pack_planes(codes, 8), pack_bits(w > 0), pack_bits(w < 0), bias)
        np.testing.assert_array_equal(got, want)
        assert got[0, 0] == 0 and got[0, 1] == k * (255 + bias)


# --- whole nets ----------------------------------------------------------------------------------
@st.composite
def nets(draw, conv: bool):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return random_net(rng, draw(st.integers(1, 12)), conv)


def _check_engine(engine: XnorReference, model: XnorModel, x: np.ndarray) -> None:
    want_in, want_acc, want_logits = integer_reference(model, x)
    trace = engine.trace(x)
    for i, (codes, acc) in enumerate(zip(want_in, want_acc)):
        np.testing.assert_array_equal(trace[f"layer{i}.in_bits"], codes, err_msg=f"layer{i}.in_bits")
        np.testing.assert_array_equal(trace[f"layer{i}.acc"], acc, err_msg=f"layer{i}.acc")
    np.testing.assert_array_equal(trace["logits"], want_logits)
    np.testing.assert_array_equal(engine.final_accumulators(x, batch_size=5), want_acc[-1])
    np.testing.assert_array_equal(engine.logits(x, batch_size=4), want_logits)
    np.testing.assert_array_equal(engine.predict(x), np.argmax(want_logits, axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=nets(conv=False))
def test_engine_matches_integer_mlp(backend: str, net) -> None:
    model, x = net
    _check_engine(make_engine(model, backend), model, x)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=nets(conv=True))
def test_engine_matches_integer_conv_net(backend: str, net) -> None:
    model, x = net
    _check_engine(make_engine(model, backend), model, x)


def test_generated_nets_do_exercise_ternary_layers() -> None:
    """The property tests are not vacuous: their nets hold ternary layers with zeros and both signs,
    dense and conv, and those layers' codes vary over the images."""
    seen = {"dense": 0, "conv": 0}
    for seed in range(40):
        model, x = random_net(np.random.default_rng(seed), 12, conv=seed % 2 == 1)
        ins, accs, _ = integer_reference(model, x)
        for i, layer in enumerate(model.layers):
            w = layer.weights_int()
            if layer.weight_bits == 2 and (w == 0).any() and (w == 1).any() and (w == -1).any() \
                    and len(np.unique(ins[i])) > 1 and len(np.unique(accs[i])) > 1:
                seen["conv" if layer.conv else "dense"] += 1
    assert seen["dense"] >= 5 and seen["conv"] >= 5, seen


def test_cnv_w2a2_shaped_net_on_every_backend() -> None:
    """CNV's shape with every layer ternary: 8-bit input, 2-bit codes after, pooling, dense tail."""
    rng = np.random.default_rng(3)
    geoms = [ConvGeometry((12, 12), 3, (3, 3)), ConvGeometry((10, 10), 16, (3, 3)), ConvGeometry((4, 4), 16, (3, 3))]
    layers = [random_layer(rng, g.window, 16, 8 if i == 0 else 2, -128 if i == 0 else -1, True, g)
              for i, g in enumerate(geoms)]
    layers[1].pool = PoolGeometry((2, 2), (2, 2))
    layers += [random_layer(rng, 2 * 2 * 16, 20, 2, -1, True), random_layer(rng, 20, 10, 2, -1, True)]
    model = XnorModel(np.sort(rng.integers(0, 257, size=(3, 255)), axis=1).astype(np.int32), layers,
                      rng.uniform(0.5, 1.0, 10).astype(np.float32), np.zeros(10, np.float32), (3, 12, 12))
    x = rng.integers(0, 256, size=(20, 3, 12, 12), dtype=np.uint8)
    for i in range(len(layers) - 1):  # thresholds from the accumulators so that codes vary
        layers[i].thresholds = _thresholds_from(rng, acc_of(model, i, x), 2, per_channel=True)
    for backend in BACKENDS:
        _check_engine(make_engine(model, backend), model, x)


# --- the file format -----------------------------------------------------------------------------
def _ternary_mlp(rng: np.random.Generator) -> XnorModel:
    model, _ = random_net(rng, 4, conv=False)
    while not any(layer.weight_bits == 2 for layer in model.layers) or model.layers[0].weight_bits != 2:
        model, _ = random_net(rng, 4, conv=False)
    return model


def test_ternary_model_roundtrips_and_only_ternary_layers_say_weight_bits(tmp_path) -> None:
    rng = np.random.default_rng(11)
    model = _ternary_mlp(rng)
    manifest = save_xnor_model(model, tmp_path / "t.npz")
    assert manifest["format_version"] == FORMAT_VERSION == 2
    for spec, layer in zip(manifest["layers"], model.layers):
        assert spec.get("weight_bits") == (2 if layer.weight_bits == 2 else None)
        assert spec["type"] == ("xnor_dense" if layer.act_bits == 1 else "bitplane_dense")
    back = load_xnor_model(tmp_path / "t.npz")
    for a, b in zip(back.layers, model.layers):
        assert (a.weight_bits, a.act_bits, a.act_bias) == (b.weight_bits, b.act_bits, b.act_bias)
        np.testing.assert_array_equal(a.weights_int(), b.weights_int())
    for name, arr in model.arrays().items():
        np.testing.assert_array_equal(back.arrays()[name], arr, err_msg=name)
    x = rng.integers(0, 256, size=(7, *model.input_shape), dtype=np.uint8)
    np.testing.assert_array_equal(XnorReference(back, backend="numpy").logits(x), integer_reference(model, x)[2])


def test_size_report_counts_both_masks() -> None:
    rng = np.random.default_rng(12)
    ternary = random_layer(rng, 100, 30, 2, -1, True)
    binary = random_layer(rng, 30, 10, 2, -1, False)
    ternary.thresholds = np.zeros((1, 2), np.int32)
    model = XnorModel(np.zeros((1, 2), np.int32), [ternary, binary], np.ones(10, np.float32),
                      np.zeros(10, np.float32), (100,))
    sizes = model.size_report()
    assert sizes["weights_packed_bytes"] == 2 * 30 * 13 + 10 * 4
    assert sizes["weights_fp32_bytes"] == 4 * (100 * 30 + 30 * 10)


def _small_ternary(rng: np.random.Generator) -> XnorModel:
    w = rng.integers(-1, 2, size=(6, 20))
    pos, neg = ternary_masks(w)
    layer = XnorLayer(20, 6, pos, None, act_bits=2, act_bias=-1, weight_bits=2, weights_neg=neg)
    return XnorModel(np.array([[64, 192]], np.int32), [layer], np.ones(6, np.float32), np.zeros(6, np.float32), (20,))


@pytest.mark.parametrize("damage, message", [
    (lambda l: setattr(l, "weights_neg", l.weights_neg | l.weights_packed), "masks overlap"),
    (lambda l: setattr(l, "weights_neg", None), "without its -1 mask"),
    (lambda l: setattr(l, "weights_neg", l.weights_neg[:, :2]), r"layer0_weights_neg is uint8\(6, 2\)"),
    (lambda l: setattr(l, "weights_neg", l.weights_neg.astype(np.int16)), "layer0_weights_neg is int16"),
    (lambda l: l.weights_neg.__setitem__((0, 2), l.weights_neg[0, 2] | 0x80),
     "layer0_weights_neg has bits set past"),
    (lambda l: l.weights_packed.__setitem__((5, 2), 0x10), "layer0_weights has bits set past in_features 20"),
    (lambda l: setattr(l, "weight_bits", 3), "weight_bits 3"),
    (lambda l: setattr(l, "weight_bits", 1), "1-bit .* has no layer0_weights_neg"),
])
def test_broken_ternary_layers_are_refused(tmp_path, damage, message: str) -> None:
    model = _small_ternary(np.random.default_rng(13))
    layer = model.layers[0]
    layer.weights_neg = layer.weights_neg.copy()
    damage(layer)
    with pytest.raises(XnorFormatError, match=message):
        save_xnor_model(model, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


def test_ternary_weights_on_a_1_bit_input_are_refused(tmp_path) -> None:
    """FINN has no XNOR mode for ternary weights: a ternary layer is always a bit-plane layer."""
    model = _small_ternary(np.random.default_rng(14))
    model.layers[0].act_bits, model.layers[0].act_bias = 1, 0
    model.input_thresholds = model.input_thresholds[:, :1]
    with pytest.raises(XnorFormatError, match="ternary weights need a multi-bit"):
        save_xnor_model(model, tmp_path / "bad.npz")


def test_weights_pm1_refuses_a_ternary_layer() -> None:
    """Reading the +1 mask as +1/-1 would turn every zero weight into -1."""
    layer = _small_ternary(np.random.default_rng(15)).layers[0]
    with pytest.raises(ValueError, match="ternary"):
        layer.weights_pm1()


def _rewrite(path, edit) -> None:
    """Let ``edit`` change the arrays and the manifest dict, then store both with consistent hashes."""
    from host.xnor_format import array_sha256, manifest_sha256

    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    manifest = json.loads(str(arrays.pop("manifest")))
    edit(arrays, manifest)
    manifest["sha256"] = {name: array_sha256(arr) for name, arr in arrays.items()}
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    np.savez(path, manifest=np.array(json.dumps(manifest)), **arrays)


def test_reader_refuses_a_ternary_layer_without_its_neg_mask(tmp_path) -> None:
    """A file whose manifest says weight_bits 2 but lacks the -1 mask (hashes consistent) must not load
    as a +1/-1 layer."""
    path = tmp_path / "t.npz"
    save_xnor_model(_small_ternary(np.random.default_rng(16)), path)
    load_xnor_model(path)
    _rewrite(path, lambda arrays, manifest: arrays.pop("layer0_weights_neg"))
    with pytest.raises(XnorFormatError, match=r"t\.npz: layer0 is ternary .* no 'layer0_weights_neg'"):
        load_xnor_model(path)


def test_reader_refuses_a_neg_mask_the_manifest_does_not_announce(tmp_path) -> None:
    path = tmp_path / "t.npz"
    save_xnor_model(_small_ternary(np.random.default_rng(17)), path)
    _rewrite(path, lambda arrays, manifest: manifest["layers"][0].pop("weight_bits"))
    with pytest.raises(XnorFormatError, match="1-bit layer but the file has a 'layer0_weights_neg'"):
        load_xnor_model(path)


def test_reader_refuses_an_unknown_layer_type(tmp_path) -> None:
    path = tmp_path / "t.npz"
    save_xnor_model(_small_ternary(np.random.default_rng(18)), path)
    _rewrite(path, lambda arrays, manifest: manifest["layers"][0].update(type="ternary_dense"))
    with pytest.raises(XnorFormatError, match="manifest type 'ternary_dense'"):
        load_xnor_model(path)
