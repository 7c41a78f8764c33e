"""The bit-plane (w1a2: 1-bit weights, multi-bit activations) layers against plain integer numpy arithmetic.

The reference below uses no bits and no packing: threshold counts as activation codes, value = code +
act_bias, and an integer matmul with the +1/-1 weights (1-bit layers: the XNOR popcount (d + K) / 2).
Every backend must give the same integer accumulators and float32 logits, bit for bit, including the
lookup-table popcount that numpy 1.x on the board uses.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import host.xnor as xnor
import host.xnor_bits as xnor_bits
from host.xnor import XnorReference, bitplane_dot_numpy, pack_planes
from host.xnor_format import FORMAT_VERSION, XnorLayer, XnorFormatError, XnorModel, load_xnor_model, save_xnor_model

BACKENDS = ["numpy", "table"] + (["numba"] if "numba" in xnor.available_backends() else [])


def _count(values: np.ndarray, thr: np.ndarray) -> np.ndarray:
    return (values[:, :, None] >= thr[None, :, :]).sum(axis=-1).astype(np.int64)


def integer_reference(model: XnorModel, x_uint8: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-layer accumulators and logits from int64 matmuls on the activation values."""
    codes = _count(x_uint8.reshape(len(x_uint8), -1).astype(np.int64), model.input_thresholds.astype(np.int64))
    accs = []
    for layer in model.layers:
        w = layer.weights_pm1().astype(np.int64)  # (M, K)
        if layer.act_bits == 1:
            acc = ((2 * codes - 1) @ w.T + layer.in_features) // 2
        else:
            acc = (codes + layer.act_bias) @ w.T
        accs.append(acc)
        if layer.thresholds is not None:
            codes = _count(acc, layer.thresholds.astype(np.int64))
    logits = accs[-1].astype(np.float32) * model.output_mul + model.output_add
    return accs, logits


def random_a2_model(widths: list[int], bits: list[int], rng: np.random.Generator, per_channel: bool) -> XnorModel:
    """Random +1/-1 weights; layer i reads a bits[i]-bit code (1 = XNOR layer) with a random bias."""
    layers = []
    t_of = [1 if b == 1 else int(rng.integers(1, 2**b)) for b in bits]  # thresholds feeding layer i
    biases = [0 if b == 1 else int(rng.integers(-(2**b) + 1, 2)) for b in bits]
    for i, (k, m) in enumerate(zip(widths[:-1], widths[1:])):
        packed = np.packbits(rng.integers(0, 2, size=(m, k), dtype=np.uint8), axis=1, bitorder="little")
        thr = None
        if i < len(widths) - 2:
            rows = m if per_channel else 1
            if bits[i] == 1:
                lo, hi = 0, k + 1
            else:
                amax = k * max(abs(biases[i]), abs(2 ** bits[i] - 1 + biases[i]))
                lo, hi = -amax, amax + 1
            spread = max(2, int(np.sqrt(k)) * 2)
            near = rng.integers(-spread, spread + 1, size=(rows, t_of[i + 1])) + (k // 2 if bits[i] == 1 else 0)
            wide = rng.integers(lo, hi + 1, size=(rows, t_of[i + 1]))
            thr = np.clip(np.where(rng.random((rows, t_of[i + 1])) < 0.8, near, wide), lo, hi).astype(np.int32)
        layers.append(XnorLayer(int(k), int(m), packed, thr, act_bits=bits[i], act_bias=biases[i]))
    c0 = widths[0] if per_channel else 1
    return XnorModel(
        input_thresholds=np.sort(rng.integers(0, 257, size=(c0, t_of[0])), axis=1).astype(np.int32),
        layers=layers,
        output_mul=rng.uniform(0.1, 2.0, size=widths[-1]).astype(np.float32),
        output_add=rng.normal(size=widths[-1]).astype(np.float32),
        input_shape=(widths[0],),
    )


def make_engine(model: XnorModel, backend: str) -> XnorReference:
    if backend == "table":
        return XnorReference(model, backend="numpy", use_table=True)
    return XnorReference(model, backend=backend)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 200), m=st.integers(1, 40), n=st.integers(1, 30),
       bits=st.integers(2, 4))
def test_bitplane_dot_equals_integer_dot(seed: int, k: int, m: int, n: int, bits: int) -> None:
    """Both popcounts: np.bitwise_count where numpy has it (else the table again), and the forced table."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**bits, size=(n, k))
    w = rng.choice(np.array([-1, 1]), size=(m, k))
    bias = int(rng.integers(-(2**bits), 3))
    want = (codes + bias) @ w.T
    planes, w_words = pack_planes(codes, bits), xnor.pack_bits(w > 0)
    for use_table in (None, True):
        got = bitplane_dot_numpy(planes, w_words, k, bias, use_table=use_table)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want, err_msg=f"use_table={use_table}")


@st.composite
def networks(draw):
    """Random widths (often not multiples of 64), code widths per layer (1 = XNOR), thresholds, pixels."""
    seed = draw(st.integers(0, 2**32 - 1))
    widths = [draw(st.integers(1, 200))] + draw(st.lists(st.integers(1, 150), max_size=3)) + [draw(st.integers(1, 12))]
    bits = [draw(st.sampled_from([1, 2, 2, 3])) for _ in widths[:-1]]
    rng = np.random.default_rng(seed)
    model = random_a2_model(widths, bits, rng, per_channel=draw(st.booleans()))
    x = rng.integers(0, 256, size=(draw(st.integers(1, 40)), widths[0]), dtype=np.uint8)
    return model, x


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks())
def test_engine_matches_integer_network(backend: str, net) -> None:
    model, x = net
    engine = make_engine(model, backend)
    want_accs, want_logits = integer_reference(model, x)
    got_accs = engine.accumulators(x)
    for i, (got, want) in enumerate(zip(got_accs, want_accs)):
        np.testing.assert_array_equal(got, want, err_msg=f"layer {i} accumulators")
    np.testing.assert_array_equal(engine.logits(x, batch_size=7), want_logits)
    trace = engine.trace(x)
    for i, want in enumerate(want_accs):
        np.testing.assert_array_equal(trace[f"layer{i}.acc"], want)
    np.testing.assert_array_equal(trace["logits"], want_logits)


def test_forced_table_fallback_on_a2_net(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy 1.x on the board: no np.bitwise_count, the table serves the bit-plane layers too."""
    monkeypatch.setattr(xnor_bits, "_BITWISE_COUNT", None)  # popcount reads it from host.xnor_bits
    rng = np.random.default_rng(7)
    model = random_a2_model([784, 64, 64, 64, 10], [2, 2, 2, 2], rng, per_channel=True)
    x = rng.integers(0, 256, size=(25, 784), dtype=np.uint8)
    _, want = integer_reference(model, x)
    np.testing.assert_array_equal(XnorReference(model, backend="numpy").logits(x), want)


def test_a2_model_roundtrips_and_w1a1_manifest_has_no_new_fields(tmp_path) -> None:
    from host.xnor_random import random_xnor_model

    rng = np.random.default_rng(8)
    model = random_a2_model([50, 20, 5], [2, 2], rng, per_channel=False)
    manifest = save_xnor_model(model, tmp_path / "a2.npz")
    assert manifest["format_version"] == FORMAT_VERSION
    assert [(l["type"], l["act_bits"], l["act_bias"]) for l in manifest["layers"]] == [
        ("bitplane_dense", 2, model.layers[0].act_bias), ("bitplane_dense", 2, model.layers[1].act_bias)]
    back = load_xnor_model(tmp_path / "a2.npz")
    assert [(l.act_bits, l.act_bias) for l in back.layers] == [(l.act_bits, l.act_bias) for l in model.layers]
    x = rng.integers(0, 256, size=(9, 50), dtype=np.uint8)
    np.testing.assert_array_equal(XnorReference(back, backend="numpy").logits(x), integer_reference(model, x)[1])
    w1a1 = save_xnor_model(random_xnor_model([20, 5, 3], rng), tmp_path / "a1.npz")
    assert all(set(l) == {"type", "in_features", "out_features", "has_thresholds"} and l["type"] == "xnor_dense"
               for l in w1a1["layers"])


def test_too_many_thresholds_for_the_code_width_are_refused(tmp_path) -> None:
    rng = np.random.default_rng(9)
    model = random_a2_model([30, 10, 4], [2, 2], rng, per_channel=True)
    model.layers[0].thresholds = np.zeros((10, 4), dtype=np.int32)  # 4 thresholds do not fit 2 bits
    with pytest.raises(XnorFormatError, match="layer0_thresholds has 4 thresholds"):
        save_xnor_model(model, tmp_path / "bad.npz")
    model = random_a2_model([30, 10, 4], [2, 1], rng, per_channel=True)
    model.layers[0].thresholds = np.zeros((10, 2), dtype=np.int32)  # a 1-bit XNOR input takes one
    with pytest.raises(XnorFormatError, match="layer1: 1-bit"):
        save_xnor_model(model, tmp_path / "bad.npz")
