"""Conv nets (CNV) in the XNOR reference against an independent integer reference, and the conv format rules.

The reference below shares no code with host/xnor.py: activation values are +-1 (1-bit layers) or
code + act_bias (bit-plane layers) as int64, windows come from ``sliding_window_view``, weights are
unpacked here and reshaped to (M, KH, KW, C) (the format's row order k = (kh*KW + kw)*C + c), dot
products are int64 einsums, the 1-bit accumulator is (d + K)/2, thresholds are counted, max pooling
is a loop over output pixels, a dense layer reads the NHWC map flattened. Every backend (numpy,
numpy with the lookup-table popcount the board uses, numba where it imports) must agree with it
exactly, through the code path (``trace`` / ``accumulators``) and the packed fast path (``logits``).
Only numpy, pytest, hypothesis and host.* are imported: this file runs in the board environment too.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import host.xnor as xnor
from host.xnor import XnorReference, im2col, max_pool, pack_bits
from host.xnor_format import (FORMAT_VERSION, ConvGeometry, PoolGeometry, XnorFormatError, XnorLayer, XnorModel,
                              load_xnor_model, save_xnor_model, validate_model, window_out_dim)
from host.xnor_random import random_conv_model
from test_xnor import BACKENDS, make_engine  # tests/host is on sys.path, as for deploy_helpers

# Channel counts that fill whole 64-bit words (packed route) and that do not (code route); conv outputs
# are word-aligned half the time, so that packed layers (and pools as OR) follow each other often.
CHANNELS = [1, 3, 5, 32, 64, 70, 128]
OUT_CHANNELS = [64, 128, 1, 3, 5, 32, 70, 64, 128, 64]


# --- the independent reference --------------------------------------------------------------------
def _weights(layer: XnorLayer) -> np.ndarray:
    """(M, K) int64 weights from the packed rows (little bit order): bit 1 = +1, else -1; for a ternary
    layer (a -1 mask ``weights_neg`` present) the +1 mask minus the -1 mask."""
    def unpack(rows: np.ndarray) -> np.ndarray:
        return np.unpackbits(rows, axis=1, bitorder="little")[:, : layer.in_features].astype(np.int64)

    neg = getattr(layer, "weights_neg", None)
    return unpack(layer.weights_packed) * 2 - 1 if neg is None else unpack(layer.weights_packed) - unpack(neg)


def _count(values: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Number of thresholds t with value >= t; thr (C or 1, T) indexed by the last axis of values."""
    return (values[..., None] >= thr.astype(np.int64)).sum(axis=-1)


def _pool(codes: np.ndarray, pool: PoolGeometry) -> np.ndarray:
    """Max pooling of (N, H, W, C) by a loop over output pixels (no padding, floor mode)."""
    n, h, w, c = codes.shape
    (kh, kw), (sh, sw) = pool.kernel, pool.stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.empty((n, oh, ow, c), dtype=codes.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = codes[:, i * sh : i * sh + kh, j * sw : j * sw + kw].max(axis=(1, 2))
    return out


def _windows(values: np.ndarray, conv: ConvGeometry) -> np.ndarray:
    """(N, H, W, C) -> (N, OH, OW, C, KH, KW): every valid window at the stride."""
    (kh, kw), (sh, sw) = conv.kernel, conv.stride
    return sliding_window_view(values, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]


def reference(model: XnorModel, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """(input codes per layer, accumulators per layer, logits) of ``model`` on raw uint8 pixels ``x``."""
    n = len(x)
    px = x.reshape(n, *model.input_shape).astype(np.int64)
    px = px.transpose(0, 2, 3, 1) if model.layers[0].conv is not None else px.reshape(n, -1)  # NCHW -> NHWC
    codes = _count(px, model.input_thresholds)
    in_codes, accs = [], []
    for layer in model.layers:
        in_codes.append(codes)
        values = 2 * codes - 1 if layer.act_bits == 1 else codes + layer.act_bias
        w = _weights(layer)
        if layer.conv is not None:
            c = layer.conv
            assert values.shape[1:] == (*c.in_dim, c.in_channels)
            w4 = w.reshape(len(w), *c.kernel, c.in_channels)  # (M, KH, KW, C): k = (kh*KW + kw)*C + c
            d = np.einsum("nhwcij,mijc->nhwm", _windows(values, c), w4, optimize=True)
        else:
            d = values.reshape(n, -1) @ w.T  # NHWC flatten
        if layer.act_bits == 1:
            assert np.all((d + layer.in_features) % 2 == 0)
            acc = (d + layer.in_features) // 2  # agreeing positions
        else:
            acc = d
        accs.append(acc)
        if layer.thresholds is not None:
            codes = _count(acc, layer.thresholds)
            if layer.pool is not None:
                codes = _pool(codes, layer.pool)
    logits = accs[-1].astype(np.float32) * model.output_mul + model.output_add
    return in_codes, accs, logits


def check_engine(engine: XnorReference, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Trace, accumulators, fast-path logits and predict of ``engine`` against :func:`reference`."""
    want_in, want_accs, want_logits = reference(engine.model, x)
    trace = engine.trace(x)
    for i, (codes, acc) in enumerate(zip(want_in, want_accs)):
        np.testing.assert_array_equal(trace[f"layer{i}.in_bits"], codes, err_msg=f"layer{i}.in_bits")
        assert trace[f"layer{i}.acc"].dtype == np.int32
        np.testing.assert_array_equal(trace[f"layer{i}.acc"], acc, err_msg=f"layer{i}.acc")
    got_accs = engine.accumulators(x)
    assert len(got_accs) == len(want_accs)
    for i, (got, want) in enumerate(zip(got_accs, want_accs)):
        np.testing.assert_array_equal(got, want, err_msg=f"accumulators()[{i}]")
    logits = engine.logits(x, batch_size=batch_size)
    np.testing.assert_array_equal(logits, want_logits, err_msg=f"logits(batch_size={batch_size})")
    np.testing.assert_array_equal(trace["logits"], logits)
    np.testing.assert_array_equal(engine.predict(x, batch_size=batch_size), np.argmax(want_logits, axis=1))
    return want_logits


def test_reference_row_order_on_a_hand_computed_window() -> None:
    """The reference itself: one 2x2 window over 2 channels, the weight row k = (kh*2 + kw)*2 + c."""
    values = np.arange(8, dtype=np.int64).reshape(1, 2, 2, 2)  # v[0, h, w, c] = (h*2 + w)*2 + c
    w = np.zeros((1, 8), dtype=np.int64)
    w[0, 5] = 1  # k = 5 -> kh 1, kw 0, c 1
    conv = ConvGeometry(in_dim=(2, 2), in_channels=2, kernel=(2, 2))
    d = np.einsum("nhwcij,mijc->nhwm", _windows(values, conv), w.reshape(1, 2, 2, 2))
    assert d.shape == (1, 1, 1, 1) and d[0, 0, 0, 0] == values[0, 1, 0, 1] == 5


# --- random conv nets -------------------------------------------------------------------------------
@st.composite
def conv_nets(draw):
    """random_conv_model with small maps, 1 or 8 input bits, 1..3 convs that fit, 0..2 hidden dense layers."""
    c = draw(st.sampled_from(CHANNELS[:-1]))
    dim = (draw(st.integers(2, 10)), draw(st.integers(2, 10)))  # 1-pixel maps: geometry_nets
    shape = (c, *dim)
    convs = []
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(1, min(3, *dim)))
        s = draw(st.integers(1, 2))
        pool = draw(st.sampled_from([True, True, False]))
        convs.append((draw(st.sampled_from(OUT_CHANNELS)), k, s, pool))
        dim = window_out_dim(dim, (k, k), (s, s))
        if pool and min(dim) >= 2:  # random_conv_model pools 2x2/2 only where it fits
            dim = (dim[0] // 2, dim[1] // 2)
    fc = draw(st.lists(st.sampled_from([1, 7, 64, 70]), max_size=2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    model = random_conv_model(rng, input_shape=shape, convs=convs, fc=fc, classes=draw(st.integers(1, 10)),
                              in_bits=draw(st.sampled_from([1, 8])))
    validate_model(model)
    x = rng.integers(0, 256, size=(draw(st.integers(1, 9)), *shape), dtype=np.uint8)
    return model, x


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=conv_nets(), batch_size=st.sampled_from([1, 3, 5]))
def test_random_conv_nets_match_reference(backend: str, net, batch_size: int) -> None:
    model, x = net
    check_engine(make_engine(model, backend), x, batch_size)


def _thresholds(rng: np.random.Generator, rows: int, t: int, lo: int, hi: int, mid: int, spread: int) -> np.ndarray:
    """(rows, t) sorted thresholds, mostly within ``spread`` of ``mid``, some anywhere in [lo, hi]."""
    near = rng.integers(mid - spread, mid + spread + 1, size=(rows, t))
    wide = rng.integers(lo, hi + 1, size=(rows, t))
    return np.sort(np.where(rng.random((rows, t)) < 0.8, near, wide), axis=1).astype(np.int32)


def geometry_model(rng: np.random.Generator, shape: tuple[int, int, int], convs: list, fc: list[int],
                   bits: list[int], shared_rows: bool) -> XnorModel:
    """What random_conv_model does not make: rectangular kernels / strides / pools, overlapping pools,
    multi-bit hidden conv inputs (act_bits per layer from ``bits``), one threshold row for all channels.

    ``convs``: ((KH, KW), (SH, SW), M, pool (kernel, stride) or None) per conv layer.
    """
    c, h, w = shape
    biases = [0 if b == 1 else int(rng.integers(-(1 << b) + 1, 1)) for b in bits]
    t_of = [1 if b == 1 else int(rng.integers(1, 1 << b)) for b in bits]  # thresholds feeding layer i
    layers, dim, ch = [], (h, w), c
    widths = [m for *_, m, _ in convs] + fc
    for i, m in enumerate(widths):
        last = i == len(widths) - 1
        if i < len(convs):
            kernel, stride, _, pool = convs[i]
            conv = ConvGeometry(in_dim=dim, in_channels=ch, kernel=kernel, stride=stride)
            k, dim = conv.window, conv.out_dim
        else:
            conv, pool, k = None, None, int(np.prod(dim)) * ch
        layer = XnorLayer(k, m, np.packbits(rng.integers(0, 2, size=(m, k), dtype=np.uint8), axis=1,
                                            bitorder="little"), None, act_bits=bits[i], act_bias=biases[i], conv=conv)
        if not last:
            if bits[i] == 1:
                lo, hi, mid = 0, k + 1, k // 2
            else:
                span = k * max(-biases[i], (1 << bits[i]) - 1 + biases[i])
                lo, hi, mid = -span, span + 1, 0
            spread = max(2, 2 * int(np.sqrt(k)) * (1 << (bits[i] - 1)))
            layer.thresholds = _thresholds(rng, 1 if shared_rows else m, t_of[i + 1], lo, hi, mid, spread)
        if pool is not None:
            layer.pool = PoolGeometry(*pool)
            dim = window_out_dim(dim, *pool)
        layers.append(layer)
        dim, ch = (dim, m) if conv is not None else ((1, 1), m)
    return XnorModel(input_thresholds=np.sort(rng.integers(0, 257, size=(1 if shared_rows else c, t_of[0])),
                                              axis=1).astype(np.int32),
                     layers=layers, output_mul=rng.uniform(0.1, 2.0, size=widths[-1]).astype(np.float32),
                     output_add=rng.normal(size=widths[-1]).astype(np.float32), input_shape=shape)


@st.composite
def geometry_nets(draw):
    c = draw(st.sampled_from(CHANNELS[:-1]))
    dim = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    shape, convs = (c, *dim), []
    for _ in range(draw(st.integers(1, 3))):
        kernel = (draw(st.integers(1, min(3, dim[0]))), draw(st.integers(1, min(3, dim[1]))))
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        dim = window_out_dim(dim, kernel, stride)
        pool = None
        if draw(st.booleans()):
            pk = (draw(st.integers(1, min(3, dim[0]))), draw(st.integers(1, min(3, dim[1]))))
            pool = (pk, (draw(st.integers(1, 2)), draw(st.integers(1, 2))))
            dim = window_out_dim(dim, *pool)
        convs.append((kernel, stride, draw(st.sampled_from(OUT_CHANNELS)), pool))
    fc = [*draw(st.lists(st.sampled_from([3, 64, 65]), max_size=1)), draw(st.integers(1, 10))]
    hidden = len(convs) + len(fc) - 1
    bits = [draw(st.sampled_from([1, 2, 8]))] + [draw(st.sampled_from([1, 1, 2])) for _ in range(hidden)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    model = geometry_model(rng, shape, convs, fc, bits, shared_rows=draw(st.booleans()))
    validate_model(model)
    return model, rng.integers(0, 256, size=(draw(st.integers(1, 7)), *shape), dtype=np.uint8)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=geometry_nets())
def test_rectangular_windows_and_multibit_hidden_layers_match_reference(backend: str, net) -> None:
    model, x = net
    check_engine(make_engine(model, backend), x, batch_size=3)


# --- the full CNV shape -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cnv() -> tuple[XnorModel, np.ndarray, tuple]:
    """random_conv_model's defaults (CNV: 3x32x32, 8-bit input, 6 convs, 2 pools, 512-512-10) on 9 images."""
    rng = np.random.default_rng(11)
    model = random_conv_model(rng)
    x = rng.integers(0, 256, size=(9, 3, 32, 32), dtype=np.uint8)
    return model, x, reference(model, x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_cnv_matches_reference_and_is_batch_size_independent(backend: str, cnv) -> None:
    model, x, (_, accs, want) = cnv
    assert [l.kind for l in model.layers] == ["bitplane_conv"] + ["xnor_conv"] * 5 + ["xnor_dense"] * 3
    engine = make_engine(model, backend)
    for i, (got, acc) in enumerate(zip(engine.accumulators(x), accs)):
        np.testing.assert_array_equal(got, acc, err_msg=f"layer {i}")
    for bs in (1, 7, len(x)):  # 7 leaves a partial batch of 2
        np.testing.assert_array_equal(engine.logits(x, batch_size=bs), want, err_msg=f"batch_size={bs}")
    engine._chunk = 2  # the engine's own memory chunks inside a batch (72 CNV images by default): partial ones too
    np.testing.assert_array_equal(engine.logits(x, batch_size=7), want, err_msg="chunks of 2 inside batches of 7")
    assert engine.logits(x[:0]).shape == (0, 10)
    assert len(np.unique(want.argmax(axis=1))) > 1  # the net does not give every image one class


# --- the format ---------------------------------------------------------------------------------------
def small_cnv(in_bits: int = 8) -> XnorModel:
    """A small CNV: 3x8x8 -> conv 3x3 64 -> conv 3x3 70 + pool 2x2 -> dense 10 -> dense 4."""
    return random_conv_model(np.random.default_rng(21), input_shape=(3, 8, 8),
                             convs=[(64, 3, 1, False), (70, 3, 1, True)], fc=[10], classes=4, in_bits=in_bits)


def _rewrite_manifest(path: Path, edit) -> None:
    """Let ``edit`` change the manifest dict, re-seal it and write the arrays back unchanged (hashes stay valid).

    Re-sealing (``manifest_sha256``) is what a deliberate forger would do: the structural checks must
    still refuse the result. An unsealed edit is refused by the seal (tests/host/test_xnor_format.py)."""
    from host.xnor_format import manifest_sha256

    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    manifest = json.loads(str(arrays["manifest"]))
    edit(manifest)
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    arrays["manifest"] = np.array(json.dumps(manifest))
    np.savez(path, **arrays)


@pytest.mark.parametrize("in_bits", [1, 8])
def test_conv_model_roundtrips(tmp_path: Path, in_bits: int) -> None:
    model = small_cnv(in_bits)
    path = tmp_path / "cnv.npz"
    manifest = save_xnor_model(model, path)
    assert manifest["format_version"] == FORMAT_VERSION == 2
    first = "bitplane_conv" if in_bits == 8 else "xnor_conv"
    assert [l["type"] for l in manifest["layers"]] == [first, "xnor_conv", "xnor_dense", "xnor_dense"]
    assert manifest["layers"][0]["conv"] == {"in_dim": [8, 8], "in_channels": 3, "kernel": [3, 3], "stride": [1, 1]}
    assert manifest["layers"][1]["conv"] == {"in_dim": [6, 6], "in_channels": 64, "kernel": [3, 3], "stride": [1, 1]}
    assert manifest["layers"][1]["pool"] == {"kernel": [2, 2], "stride": [2, 2]}
    assert [("conv" in l, "pool" in l) for l in manifest["layers"]] == [(True, False), (True, True), (False, False),
                                                                         (False, False)]
    assert manifest["input_shape"] == [3, 8, 8]
    back = load_xnor_model(path)
    assert back.input_shape == (3, 8, 8)
    for a, b in zip(back.layers, model.layers):
        assert (a.conv, a.pool, a.act_bits, a.act_bias, a.kind) == (b.conv, b.pool, b.act_bits, b.act_bias, b.kind)
    for name, arr in model.arrays().items():
        np.testing.assert_array_equal(back.arrays()[name], arr, err_msg=name)
    x = np.random.default_rng(22).integers(0, 256, size=(5, 3, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(XnorReference(back, backend="numpy").logits(x), reference(model, x)[2])


def _replace_conv(layer: XnorLayer, **changes) -> None:
    layer.conv = dataclasses.replace(layer.conv, **changes)


def _bad_kernel(m: XnorModel) -> None:
    _replace_conv(m.layers[0], kernel=(9, 3))
    m.layers[0].in_features = 9 * 3 * 3


def _bad_in_features(m: XnorModel) -> None:
    m.layers[1].in_features = 10


def _bad_in_dim(m: XnorModel) -> None:
    _replace_conv(m.layers[1], in_dim=(7, 6))


def _bad_in_channels(m: XnorModel) -> None:
    _replace_conv(m.layers[1], in_channels=32)
    m.layers[1].in_features = 9 * 32


def _pool_on_dense(m: XnorModel) -> None:
    m.layers[2].pool = PoolGeometry((2, 2), (2, 2))


def _pool_on_last(m: XnorModel) -> None:
    """Last layer a conv (fc dropped) that pools: it has no thresholds, so no activations to pool."""
    del m.layers[2:]
    m.layers[1].thresholds = None
    m.output_mul, m.output_add = m.output_mul[:1].repeat(70), m.output_add[:1].repeat(70)


def _pool_without_thresholds(m: XnorModel) -> None:
    m.layers[1].thresholds = None


def _conv_map_out(m: XnorModel) -> None:
    """Last layer a conv with a 4x4 output map and no pool: no class scores."""
    del m.layers[2:]
    m.layers[1].thresholds, m.layers[1].pool = None, None
    m.output_mul, m.output_add = m.output_mul[:1].repeat(70), m.output_add[:1].repeat(70)


def _input_rows_2(m: XnorModel) -> None:
    m.input_thresholds = m.input_thresholds[:2]


def _input_rows_per_pixel(m: XnorModel) -> None:
    """One row per input value is what an MLP may have; a conv net takes 1 or C (here 3) rows."""
    m.input_thresholds = np.repeat(m.input_thresholds[:1], 3 * 8 * 8, axis=0)


def _input_shape_flat(m: XnorModel) -> None:
    m.input_shape, m.input_thresholds = (3 * 8 * 8,), m.input_thresholds[:1]


def _pool_stride_zero(m: XnorModel) -> None:
    m.layers[1].pool = PoolGeometry((2, 2), (0, 2))


def _conv_stride_zero(m: XnorModel) -> None:
    _replace_conv(m.layers[0], stride=(1, 0))


REFUSALS = {
    "kernel_larger_than_map": (_bad_kernel, r"layer0: kernel \(9, 3\) / stride \(1, 1\) do not fit \(8, 8\)"),
    "in_features_not_window": (_bad_in_features, r"layer1: in_features 10 != kernel window 3x3x64"),
    "in_dim_mismatch": (_bad_in_dim, r"layer1: conv expects an \(H, W, C\) = \(7, 6, 64\) feature map "
                                     r"but receives \(6, 6, 64\)"),
    "in_channels_mismatch": (_bad_in_channels, r"layer1: conv expects .*\(6, 6, 32\).* receives \(6, 6, 64\)"),
    "pool_on_dense": (_pool_on_dense, r"layer2: pooling after a dense layer"),
    "pool_on_last_layer": (_pool_on_last, r"layer1: pooling needs the layer's activations \(thresholds\)"),
    "pool_without_thresholds": (_pool_without_thresholds, r"layer1: pooling needs the layer's activations"),
    "last_layer_feature_map": (_conv_map_out, r"the last layer outputs a feature map \(4, 4, 70\); it must be dense"),
    "input_rows_2": (_input_rows_2, r"input_thresholds has shape \(2, 255\), expected \(1 or 3, T>=1\)"),
    "input_rows_per_pixel": (_input_rows_per_pixel, r"input_thresholds has shape \(192, 255\), expected \(1 or 3"),
    "input_shape_not_chw": (_input_shape_flat, r"a conv net needs input_shape \(C, H, W\), got \(192,\)"),
    "pool_stride_zero": (_pool_stride_zero, r"layer1: pool \(2, 2\) / stride \(0, 2\) do not fit"),
    "conv_stride_zero": (_conv_stride_zero, r"layer0: kernel \(3, 3\) / stride \(1, 0\) do not fit"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_inconsistent_conv_model_is_not_written(tmp_path: Path, case: str) -> None:
    edit, message = REFUSALS[case]
    model = small_cnv()
    validate_model(model)
    edit(model)
    path = tmp_path / "bad.npz"
    with pytest.raises(XnorFormatError, match=message):
        save_xnor_model(model, path)
    assert not path.exists()


def _manifest_kernel(manifest: dict) -> None:
    manifest["layers"][1]["conv"]["kernel"] = [2, 2]


def _manifest_drop_pool(manifest: dict) -> None:
    del manifest["layers"][1]["pool"]


def _manifest_no_stride(manifest: dict) -> None:
    del manifest["layers"][0]["conv"]["stride"]


def _manifest_type_dense(manifest: dict) -> None:
    manifest["layers"][1]["type"] = "xnor_dense"


def _manifest_version_1(manifest: dict) -> None:
    manifest["format_version"] = 1


MANIFEST_REFUSALS = {
    "kernel_edited": (_manifest_kernel, r"layer1: in_features 576 != kernel window 2x2x64"),
    "pool_dropped": (_manifest_drop_pool, r"layer2 expects 280 inputs but receives 1120"),
    "stride_missing": (_manifest_no_stride, r"malformed layer entry in the manifest \(KeyError: 'stride'\)"),
    "type_says_dense": (_manifest_type_dense,
                        r"layer1: manifest type 'xnor_dense' but the entry describes a 'xnor_conv'"),
    "version_1": (_manifest_version_1, r"format version 1, this reader understands version 2"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_REFUSALS))
def test_edited_conv_manifest_is_refused_on_load(tmp_path: Path, case: str) -> None:
    """The sha256 covers the arrays, not the manifest: geometry edits must still be caught by validation."""
    edit, message = MANIFEST_REFUSALS[case]
    path = tmp_path / "cnv.npz"
    save_xnor_model(small_cnv(), path)
    _rewrite_manifest(path, edit)
    with pytest.raises(XnorFormatError, match=message) as err:
        load_xnor_model(path)
    assert str(path) in str(err.value)


# --- im2col / max_pool on packed words ------------------------------------------------------------------
def _pack_pixels(codes: np.ndarray) -> np.ndarray:
    """(N, H, W, C) 0/1 -> (N, H, W, ceil(C/64)) words, each pixel packed on its own."""
    n, h, w, c = codes.shape
    return pack_bits(codes.reshape(n * h * w, c)).reshape(n, h, w, -1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), words=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3))
def test_im2col_of_packed_pixels_is_packed_im2col(seed: int, words: int, h: int, w: int, kh: int, kw: int,
                                                  sh: int, sw: int) -> None:
    """With C = 64 * words each pixel's words are whole, so the packed window is the packed im2col row."""
    kh, kw = min(kh, h), min(kw, w)
    c = 64 * words
    codes = np.random.default_rng(seed).integers(0, 2, size=(2, h, w, c), dtype=np.uint8)
    cols = im2col(codes, (kh, kw), (sh, sw))  # (N, OH, OW, KH*KW*C)
    conv = ConvGeometry(in_dim=(h, w), in_channels=c, kernel=(kh, kw), stride=(sh, sw))
    want = _windows(codes, conv).transpose(0, 1, 2, 4, 5, 3).reshape(*cols.shape)  # (kh, kw, c) order
    np.testing.assert_array_equal(cols, want)
    packed = im2col(_pack_pixels(codes), (kh, kw), (sh, sw))
    np.testing.assert_array_equal(packed, pack_bits(cols.reshape(-1, cols.shape[-1])).reshape(packed.shape))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), c=st.sampled_from([1, 5, 64, 70, 128]), h=st.integers(1, 7),
       w=st.integers(1, 7), kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3))
def test_max_pool_on_packed_words_is_or(seed: int, c: int, h: int, w: int, kh: int, kw: int, sh: int, sw: int) -> None:
    """max of 0/1 codes == OR of their packed words, for any channel count (padding bits stay 0)."""
    kh, kw = min(kh, h), min(kw, w)
    pool = PoolGeometry((kh, kw), (sh, sw))
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(3, h, w, c), dtype=np.uint8)
    pooled = max_pool(bits, pool.kernel, pool.stride)
    np.testing.assert_array_equal(pooled, _pool(bits, pool))
    np.testing.assert_array_equal(max_pool(_pack_pixels(bits), pool.kernel, pool.stride, packed=True),
                                  _pack_pixels(pooled))
    codes = rng.integers(0, 256, size=(3, h, w, c), dtype=np.uint8)  # multi-bit codes: a real max
    np.testing.assert_array_equal(max_pool(codes, pool.kernel, pool.stride), _pool(codes, pool))


@pytest.mark.skipif("numba" not in xnor.available_backends(), reason="numba is not importable here (optional)")
@pytest.mark.parametrize("seed, c, kh, kw, sh, sw", [(0, 3, 3, 3, 1, 1), (1, 5, 2, 3, 2, 1), (2, 1, 1, 1, 1, 2)])
def test_direct_conv_kernels_match_im2col(seed: int, c: int, kh: int, kw: int, sh: int, sw: int) -> None:
    """The compiled direct convolutions (no im2col) against im2col + the dense kernels: the integer conv of
    multi-bit codes (int16 and int32 accumulators) and the packed XNOR conv with fused thresholds."""
    from host import xnor_numba as kern
    from host.xnor_bitplane import bitplane_dot_numpy
    from host.xnor_bits import pack_planes

    rng = np.random.default_rng(seed)
    n, h, w, m = 2, 7, 8, 70
    codes = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    k = kh * kw * c
    w_int = rng.choice(np.array([-1, 1], dtype=np.int8), size=(m, k))
    rows = im2col(codes, (kh, kw), (sh, sw))
    oh, ow = rows.shape[1:3]
    w_words = pack_bits(w_int > 0)
    want = bitplane_dot_numpy(pack_planes(rows.reshape(-1, k), 8), w_words, k, -128).reshape(n, oh, ow, m)
    w16 = kern.int_weights(w_int, 8, -128)
    assert w16.dtype == np.int16 and kern.int_weights(np.ones((1, 300), np.int8), 8, -128).dtype == np.int32
    for wk in (w16, np.ascontiguousarray(w_int.T, dtype=np.int32)):
        np.testing.assert_array_equal(kern.int_conv(codes, wk, (kh, kw), (sh, sw), -128), want)
        thr = rng.integers(-200, 200, size=m).astype(np.int32)
        np.testing.assert_array_equal(kern.int_conv(codes, wk, (kh, kw), (sh, sw), -128, thr),
                                      pack_bits((want >= thr).reshape(-1, m)).reshape(n, oh, ow, -1))
    # packed XNOR conv: 128 channels = 2 words per pixel
    bits = rng.integers(0, 2, size=(n, h, w, 128), dtype=np.uint8)
    words = pack_bits(bits.reshape(-1, 128)).reshape(n, h, w, 2)
    kb = kh * kw * 128
    wb = pack_bits(rng.integers(0, 2, size=(m, kb), dtype=np.uint8))
    thr = rng.integers(kb // 2 - 20, kb // 2 + 20, size=m).astype(np.int32)
    packed_rows = im2col(words, (kh, kw), (sh, sw)).reshape(-1, kh * kw * 2)
    w_t = np.ascontiguousarray(wb.T)
    want_words = kern.xnor_popcount_threshold_pack(packed_rows, w_t, kb, thr).reshape(n, oh, ow, -1)
    np.testing.assert_array_equal(kern.xnor_conv_pack(words, w_t, (kh, kw), (sh, sw), kb, thr), want_words)


@pytest.mark.skipif("numba" not in xnor.available_backends(), reason="numba is not importable here (optional)")
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), c=st.sampled_from([1, 3, 64, 70, 128]), h=st.integers(1, 7),
       w=st.integers(1, 7), kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       per_channel=st.booleans())
def test_compiled_or_pool_and_pixel_codes_match_numpy(seed: int, c: int, h: int, w: int, kh: int, kw: int, sh: int,
                                                      sw: int, per_channel: bool) -> None:
    """The compiled OR pooling of packed pixels (host/xnor_numba.or_pool) equals max pooling of the bits, and the
    compiled input-code table lookup (pixel_codes) equals the threshold count of every pixel, per channel or shared."""
    from host import xnor_numba

    kh, kw = min(kh, h), min(kw, w)
    pool = PoolGeometry((kh, kw), (sh, sw))
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(2, h, w, c), dtype=np.uint8)
    np.testing.assert_array_equal(xnor_numba.or_pool(_pack_pixels(bits), pool.kernel, pool.stride),
                                  _pack_pixels(_pool(bits, pool)))
    thr = np.sort(rng.integers(-5, 262, size=(c if per_channel else 1, 4)), axis=1).astype(np.int32)
    lut = (np.arange(256)[None, :, None] >= thr[:, None, :]).sum(-1).astype(np.uint8)  # (C or 1, 256)
    pixels = rng.integers(0, 256, size=(2, h, w, c), dtype=np.uint8)
    want = (pixels[..., None] >= np.broadcast_to(thr, (c, 4))).sum(-1)
    np.testing.assert_array_equal(xnor_numba.pixel_codes(pixels, lut), want)


@pytest.mark.skipif("numba" not in xnor.available_backends(), reason="numba is not importable here (optional)")
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), c=st.sampled_from([1, 2, 3, 5]), h=st.integers(1, 12),
       w=st.integers(1, 12), kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       m=st.sampled_from([1, 7, 64, 65]), bits=st.sampled_from([2, 8]), wide=st.booleans())
def test_blocked_int_conv_matches_numpy(seed: int, c: int, h: int, w: int, kh: int, kw: int, sh: int, sw: int,
                                        m: int, bits: int, wide: bool) -> None:
    """host/xnor_numba.int_conv (INT_CONV_PIXELS output pixels a pass; a row's last, partial block repeats its last
    pixel) against the numpy path's im2col + bit-plane dot, for every output width 1..12 (every remainder of the
    block), strides, int16 and int32 accumulators, accumulators and fused threshold + pack."""
    from host import xnor_numba as kern
    from host.xnor_bitplane import bitplane_dot_numpy
    from host.xnor_bits import pack_planes

    kh, kw = min(kh, h), min(kw, w)
    rng = np.random.default_rng(seed)
    n, k, bias = 2, kh * kw * c, -(1 << (bits - 1))
    codes = rng.integers(0, 1 << bits, size=(n, h, w, c), dtype=np.uint8)
    w_int = rng.choice(np.array([-1, 1], dtype=np.int8), size=(m, k))
    rows = im2col(codes, (kh, kw), (sh, sw))
    oh, ow = rows.shape[1:3]
    want = bitplane_dot_numpy(pack_planes(rows.reshape(-1, k), bits), pack_bits(w_int > 0), k, bias)
    wk = np.ascontiguousarray(w_int.T, dtype=np.int32) if wide else kern.int_weights(w_int, bits, bias)
    np.testing.assert_array_equal(kern.int_conv(codes, wk, (kh, kw), (sh, sw), bias), want.reshape(n, oh, ow, m))
    thr = rng.integers(-2 * k, 2 * k + 1, size=m).astype(np.int32)
    np.testing.assert_array_equal(kern.int_conv(codes, wk, (kh, kw), (sh, sw), bias, thr),
                                  pack_bits(want >= thr).reshape(n, oh, ow, -1))
