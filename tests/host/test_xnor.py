"""The XNOR-popcount engine against a plain float +1/-1 network, on random widths, weights and thresholds.

The float reference below is written independently of host/xnor.py: no bits, no packing, just
sign vectors and matmul (larq's habit: a binary layer equals a float layer with weights sign(w)).
Every backend (numpy with np.bitwise_count, numpy with the lookup table forced, numba) must give
the same integer accumulators and the same float32 logits, bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import host.xnor as xnor
import host.xnor_bits as xnor_bits
from host.xnor import XnorReference, pack_bits, popcount, unpack_bits
from host.xnor_format import XnorModel
from host.xnor_random import MLP_WIDTHS, random_xnor_model

BACKENDS = ["numpy", "table"] + (["numba"] if "numba" in xnor.available_backends() else [])


def float_reference(model: XnorModel, x_uint8: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-layer accumulators and logits of the same network in float64 +1/-1 arithmetic."""
    pixels = x_uint8.reshape(len(x_uint8), -1).astype(np.float64)
    h = np.where(pixels >= model.input_thresholds[:, 0][None, :], 1.0, -1.0)  # (N, K0) +-1
    accs = []
    for layer in model.layers:
        d = h @ layer.weights_pm1().astype(np.float64).T  # (N, M) +-1 dot products
        acc = (d + layer.in_features) / 2  # agreeing positions
        accs.append(acc.astype(np.int64))
        if layer.thresholds is not None:
            h = np.where(acc >= layer.thresholds[:, 0][None, :], 1.0, -1.0)
    logits = accs[-1].astype(np.float32) * model.output_mul + model.output_add
    return accs, logits


def make_engine(model: XnorModel, backend: str) -> XnorReference:
    if backend == "table":
        return XnorReference(model, backend="numpy", use_table=True)
    return XnorReference(model, backend=backend)


@st.composite
def networks(draw):
    """Random widths (often not multiples of 64), weights, thresholds and pixels."""
    seed = draw(st.integers(0, 2**32 - 1))
    k0 = draw(st.integers(1, 200))
    hidden = draw(st.lists(st.integers(1, 150), min_size=0, max_size=3))
    out = draw(st.integers(1, 12))
    n = draw(st.integers(1, 40))
    per_channel = draw(st.booleans())
    rng = np.random.default_rng(seed)
    model = random_xnor_model([k0, *hidden, out], rng, per_channel=per_channel)
    x = rng.integers(0, 256, size=(n, k0), dtype=np.uint8)
    return model, x


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks())
def test_engine_matches_float_pm1_network(backend: str, net) -> None:
    model, x = net
    engine = make_engine(model, backend)
    want_accs, want_logits = float_reference(model, x)
    got_accs = engine.accumulators(x)
    assert len(got_accs) == len(want_accs)
    for i, (got, want) in enumerate(zip(got_accs, want_accs)):
        np.testing.assert_array_equal(got, want, err_msg=f"layer {i} accumulators")
    np.testing.assert_array_equal(engine.logits(x, batch_size=7), want_logits)
    np.testing.assert_array_equal(engine.predict(x), np.argmax(want_logits, axis=1))
    trace = engine.trace(x)
    np.testing.assert_array_equal(trace["logits"], want_logits)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batches_of_any_size_give_the_same_result(backend: str) -> None:
    rng = np.random.default_rng(1)
    engine = make_engine(random_xnor_model(MLP_WIDTHS["sfc"], rng), backend)
    x = rng.integers(0, 256, size=(1001, 1, 28, 28), dtype=np.uint8)
    full = engine.logits(x, batch_size=1001)
    for bs in (1, 64, 1000):  # 1000 leaves a final partial batch of 1
        np.testing.assert_array_equal(engine.logits(x, batch_size=bs), full)
    assert engine.logits(x[:0]).shape == (0, 10)


def test_backends_agree_on_lfc_sized_net() -> None:
    rng = np.random.default_rng(2)
    model = random_xnor_model(MLP_WIDTHS["lfc"], rng)
    x = rng.integers(0, 256, size=(50, 784), dtype=np.uint8)
    results = {b: make_engine(model, b).final_accumulators(x) for b in BACKENDS}
    want, _ = float_reference(model, x)
    for backend, acc in results.items():
        np.testing.assert_array_equal(acc, want[-1], err_msg=backend)


def test_popcount_table_and_bitwise_count_agree_with_python() -> None:
    rng = np.random.default_rng(3)
    words = np.concatenate([
        np.array([0, 1, 2**63, 2**64 - 1, 0x5555555555555555, 0xAAAAAAAAAAAAAAAA], dtype=np.uint64),
        rng.integers(0, 2**64 - 1, size=500, dtype=np.uint64, endpoint=True),
    ]).reshape(2, -1)
    want = np.array([[bin(int(v)).count("1") for v in row] for row in words])
    np.testing.assert_array_equal(popcount(words, use_table=True), want)
    if hasattr(np, "bitwise_count"):
        np.testing.assert_array_equal(popcount(words, use_table=False), want)


def test_forced_table_fallback_when_numpy_lacks_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """What numpy 1.x on the board does: no np.bitwise_count, so the table is used automatically."""
    monkeypatch.setattr(xnor_bits, "_BITWISE_COUNT", None)  # popcount reads it from host.xnor_bits
    words = np.array([[2**64 - 1, 3]], dtype=np.uint64)
    np.testing.assert_array_equal(popcount(words), [[64, 2]])
    with pytest.raises(RuntimeError, match="bitwise_count"):
        popcount(words, use_table=False)
    rng = np.random.default_rng(4)
    model = random_xnor_model(MLP_WIDTHS["tfc"], rng)
    x = rng.integers(0, 256, size=(20, 784), dtype=np.uint8)
    _, want = float_reference(model, x)
    np.testing.assert_array_equal(XnorReference(model, backend="numpy").logits(x), want)


def test_numpy_backend_can_be_forced_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BNNFLOW_XNOR_BACKEND", "numpy")
    model = random_xnor_model([20, 5, 3], np.random.default_rng(5))
    assert XnorReference(model).backend == "numpy"
    assert xnor.available_backends() == ["numpy"]
    with pytest.raises(RuntimeError, match="numba"):
        XnorReference(model, backend="numba")


@pytest.mark.parametrize("k", [1, 63, 64, 65, 784, 1024])
def test_pack_unpack_roundtrip_and_padding_is_zero(k: int) -> None:
    bits = np.random.default_rng(k).integers(0, 2, size=(3, k), dtype=np.uint8)
    words = pack_bits(bits)
    assert words.shape == (3, (k + 63) // 64) and words.dtype == np.uint64
    np.testing.assert_array_equal(unpack_bits(words, k), bits)
    assert popcount(words).sum() == bits.sum()  # no stray padding bits


def test_bad_input_is_refused() -> None:
    engine = XnorReference(random_xnor_model([784, 8, 10], np.random.default_rng(6)), backend="numpy")
    with pytest.raises(TypeError, match="uint8"):
        engine.predict(np.zeros((2, 784), dtype=np.float32))
    with pytest.raises(ValueError, match="783 values per image"):
        engine.predict(np.zeros((2, 783), dtype=np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        engine.predict(np.zeros((2, 784), dtype=np.uint8), batch_size=0)


@pytest.mark.parametrize("batch_size", [2.5, float("nan"), float("inf"), None, "3", True, 0, -1])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused_alike_by_every_backend(batch_size) -> None:
    """Review of issue 14: the compiled call ignored batch_size (2.5 and nan computed) while the numpy backend
    raised its own TypeError; now one check before dispatch gives every backend the same refusal."""
    model = random_xnor_model([100, 70, 10], np.random.default_rng(1))
    x = np.random.default_rng(2).integers(0, 256, (7, 100), dtype=np.uint8)
    errors = set()
    for backend in BACKENDS:
        engine = make_engine(model, backend)
        for method in (engine.predict, engine.logits, engine.final_accumulators):
            with pytest.raises((TypeError, ValueError), match="batch_size must be") as err:
                method(x, batch_size=batch_size)
            errors.add((type(err.value), str(err.value)))
    assert len(errors) == 1, errors
    kind = ValueError if isinstance(batch_size, int) and not isinstance(batch_size, bool) else TypeError
    assert errors.pop()[0] is kind
    for backend in BACKENDS:  # numpy integers are integers
        engine = make_engine(model, backend)
        assert engine.predict(x, batch_size=np.int64(3)).shape == (7,)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not importable here (the compiled path is optional)")
@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 600])
def test_compiled_whole_mlp_matches_per_layer_path(n: int) -> None:
    """The one-call compiled MLP (host/xnor_numba.MlpNet, blocks of MLP_BLOCK images) gives the per-layer
    path's logits and the numpy path's top-1, bit for bit, at batch sizes around its block size."""
    from host.xnor_numba import MLP_BLOCK

    assert MLP_BLOCK == 256  # the parametrization straddles it
    rng = np.random.default_rng(n)
    model = random_xnor_model([300, 130, 64, 70, 10], rng, per_channel=bool(n % 2))
    x = rng.integers(0, 256, size=(n, 300), dtype=np.uint8)
    whole = XnorReference(model, backend="numba")
    assert whole._net is not None
    per_layer = XnorReference(model, backend="numba")
    per_layer._net = None
    numpy_engine = XnorReference(model, backend="numpy")
    want = numpy_engine.logits(x)
    np.testing.assert_array_equal(whole.logits(x), want)
    np.testing.assert_array_equal(per_layer.logits(x), want)
    np.testing.assert_array_equal(whole.predict(x), np.argmax(want, axis=1))
    np.testing.assert_array_equal(whole.predict(x, batch_size=7), numpy_engine.predict(x, batch_size=7))


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_is_validated_once_not_per_call(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's checks run when the engine is built; a call only checks its input (cheap at batch 1)."""
    model = random_xnor_model([784, 64, 10], np.random.default_rng(7))
    engine = make_engine(model, backend)
    x = np.random.default_rng(8).integers(0, 256, size=(3, 784), dtype=np.uint8)
    want = engine.logits(x)

    def fail(_model):
        raise AssertionError("validate_model ran during a call")

    monkeypatch.setattr(xnor, "validate_model", fail)
    np.testing.assert_array_equal(engine.logits(x), want)
    engine.predict(x[:1], batch_size=1)
    with pytest.raises(AssertionError, match="during a call"):
        make_engine(model, backend)  # building an engine does validate
    with pytest.raises(ValueError, match="783 values per image"):
        engine.predict(np.zeros((1, 783), dtype=np.uint8))


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not importable here (the compiled path is optional)")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks(), layout=st.sampled_from(["2d", "3d", "4d", "strided", "list", "int64", "readonly"]),
       extreme=st.sampled_from([None, -300, 0, 1, 255, 256, 10**6]))
def test_fast_path_matches_numpy_for_any_input_form(net, layout: str, extreme: int | None) -> None:
    """predict / logits' allocation-free compiled call (host/xnor_numba._mlp_into: typed for uint8 C-contiguous
    2-d and 4-d arrays, int16 input thresholds clipped to [0, 256]) gives the numpy engine's labels and logits bit
    for bit; inputs it does not take (3-d, strided, a list, another dtype, read-only) go the checked path with the
    same result, and input thresholds outside the pixel range (negative, 256, huge) compare as in numpy."""
    model, x = net
    if extreme is not None:
        thr = model.input_thresholds.copy()
        thr[0, 0] = extreme
        model = dataclasses.replace(model, input_thresholds=thr)
    fast = XnorReference(model, backend="numba")
    assert fast._fast is not None
    want = XnorReference(model, backend="numpy").logits(x)
    k0 = x.shape[1]
    if layout == "3d":
        x = x.reshape(len(x), 1, k0)
    elif layout == "4d":
        x = x.reshape(len(x), 1, 1, k0)
    elif layout == "strided":
        x = np.repeat(x, 2, axis=0)[::2]
    elif layout == "list":
        x = x.tolist()
    elif layout == "int64":
        x = x.astype(np.int64)
    elif layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    if layout == "int64":  # refused with the checked path's message, not computed on
        with pytest.raises(TypeError, match="uint8"):
            fast.predict(x)
        return
    if layout == "list":
        with pytest.raises(TypeError, match="uint8"):
            fast.predict(x)
        x = np.asarray(x, dtype=np.uint8)
    np.testing.assert_array_equal(fast.logits(x, batch_size=1), want)
    np.testing.assert_array_equal(fast.predict(x), np.argmax(want, axis=1))
    np.testing.assert_array_equal(fast.predict(x[:1], batch_size=1), np.argmax(want[:1], axis=1))
