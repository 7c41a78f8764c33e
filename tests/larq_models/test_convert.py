"""larq_models.convert: Larq / Keras models -> QONNX, checked against Larq's forward by an independent numpy
interpreter of the graph (onnx_numpy.py), over random models; and every refusal names its layer and why."""

from __future__ import annotations

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from larq_models.convert import ConversionError, ModelFileError, convert, load_keras_model
from larq_models.layers import FixedPointInput, TensorNorm
from larq_models.topologies import build_larq_model
from tests.larq_models import onnx_numpy

pytestmark = pytest.mark.larq_env
BIN = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)


def _randomise_norms(model: tf.keras.Model, rng: np.random.Generator) -> None:
    """Batch-norm / TensorNorm statistics and affine parameters away from their initial identity."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            fan = 4.0 * np.sqrt(n)
            layer.set_weights([rng.normal(0, 1, n).astype(np.float32), rng.normal(0, 0.5, n).astype(np.float32),
                               rng.normal(0, fan, n).astype(np.float32), rng.uniform(1, fan**2, n).astype(np.float32)])
        elif isinstance(layer, TensorNorm):
            layer.set_weights([np.float32(rng.uniform(0.5, 2)), np.float32(rng.normal()),
                               np.float32(rng.normal(0, 3)), np.float32(rng.uniform(1, 50))])


def _compare(model: tf.keras.Model, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conversion = convert(model)
    with lq.context.quantized_scope(True):
        larq = model(x_nhwc.astype(np.float32), training=False).numpy()
    graph = np.concatenate([onnx_numpy.run(conversion.onnx_model, s[None].transpose(0, 3, 1, 2)) for s in x_nhwc])
    return larq, graph


@pytest.mark.parametrize("name", ["tfc_w1a1_larq", "cnv_w1a1_larq"])
def test_bnnflow_topologies_convert_exactly(name: str) -> None:
    model = build_larq_model(name, seed=1)
    _randomise_norms(model, np.random.default_rng(1))
    x = np.random.default_rng(2).integers(0, 256, (3, *model.input_shape[1:]), dtype=np.uint8)
    larq, graph = _compare(model, x)
    assert np.array_equal(larq.argmax(1), graph.argmax(1))
    np.testing.assert_allclose(graph, larq, rtol=0, atol=1e-3)


def test_graph_has_brevitas_shape() -> None:
    """Input global_in NCHW raw pixels, output global_out, the MLP's flatten before its first sign, CNV's 8-bit Quant."""
    tfc = convert(build_larq_model("tfc_w1a1_larq")).onnx_model
    ops = [n.op_type for n in tfc.graph.node]
    assert ops[:5] == ["Mul", "Add", "Reshape", "BipolarQuant", "BipolarQuant"] and ops[-4:] == ["Sub", "Div", "Mul", "Add"]
    assert tfc.graph.input[0].name == "global_in" and tfc.graph.output[0].name == "global_out"
    assert [d.dim_value for d in tfc.graph.input[0].type.tensor_type.shape.dim] == [1, 1, 28, 28]
    cnv = convert(build_larq_model("cnv_w1a1_larq")).onnx_model
    quant = [n for n in cnv.graph.node if n.op_type == "Quant"]
    assert len(quant) == 1 and {a.name: a.i for a in quant[0].attribute if a.name != "rounding_mode"} == {"signed": 1, "narrow": 0}
    pools = [i for i, n in enumerate(cnv.graph.node) if n.op_type == "MaxPool"]
    assert len(pools) == 2 and all(cnv.graph.node[i - 1].op_type == "BipolarQuant" for i in pools)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), hw=st.integers(4, 7), cin=st.integers(1, 3), c1=st.integers(2, 6),
       pool=st.booleans(), width=st.integers(2, 12))
def test_random_conv_models_convert_exactly(seed: int, hw: int, cin: int, c1: int, pool: bool, width: int) -> None:
    """Random small conv nets: the flatten of an (H, W, C) map with H*W > 1 permutes the dense rows correctly."""
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((hw, hw, cin))
    x = tf.keras.layers.Rescaling(2 / 255, offset=-1.0)(inp)
    x = lq.layers.QuantConv2D(c1, 2, input_quantizer=FixedPointInput(8, 7), **BIN)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(c1 + 1, 2, input_quantizer="approx_sign", **BIN)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    if pool:
        x = tf.keras.layers.MaxPooling2D(2)(x)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(width, input_quantizer="ste_sign", **BIN)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantDense(5, input_quantizer="swish_sign", **BIN)(x)
    model = tf.keras.Model(inp, TensorNorm()(x))
    rng = np.random.default_rng(seed)
    _randomise_norms(model, rng)
    x = rng.integers(0, 256, (4, hw, hw, cin), dtype=np.uint8)
    larq, graph = _compare(model, x)
    np.testing.assert_allclose(graph, larq, rtol=0, atol=1e-3)


def test_sequential_model_with_final_softmax() -> None:
    """A Sequential model ending in TensorNorm + softmax: the softmax is dropped, logits before it compared."""
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)),
        tf.keras.layers.Rescaling(2 / 255, offset=-1.0),
        tf.keras.layers.Flatten(),
        lq.layers.QuantDense(16, input_quantizer="ste_sign", **BIN),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.Dropout(0.2),
        lq.layers.QuantDense(4, input_quantizer="ste_sign", **BIN),
        TensorNorm(),
        tf.keras.layers.Activation("softmax"),
    ])
    _randomise_norms(model, np.random.default_rng(0))
    conversion = convert(model)
    assert conversion.dropped_softmax and conversion.logits_layer == model.layers[-2].name
    x = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8).astype(np.float32)
    head = tf.keras.Model(model.inputs, model.layers[-2].output)
    with lq.context.quantized_scope(True):
        larq = head(x, training=False).numpy()
    graph = np.concatenate([onnx_numpy.run(conversion.onnx_model, s[None].transpose(0, 3, 1, 2)) for s in x])
    np.testing.assert_allclose(graph, larq, rtol=0, atol=1e-4)


def _mlp(first_input="ste_sign", hidden_input="ste_sign", kernel="ste_sign", bn=True, middle=None, bias=(False, False),
         tail=()) -> tf.keras.Model:
    inp = tf.keras.Input((4, 4, 1))
    x = tf.keras.layers.Rescaling(2 / 255, offset=-1.0)(inp)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(8, input_quantizer=first_input, kernel_quantizer=kernel, use_bias=bias[0], name="fc0")(x)
    if bn:
        x = tf.keras.layers.BatchNormalization(name="fc0_bn")(x)
    if middle is not None:
        x = middle(x)
    x = lq.layers.QuantDense(3, input_quantizer=hidden_input, kernel_quantizer="ste_sign", use_bias=bias[1], name="fc1")(x)
    for layer in tail:
        x = layer(x)
    return tf.keras.Model(inp, x)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(hidden_input=lq.quantizers.DoReFa(k_bit=2, mode="activations")), r"'fc1'.*DoReFa.*multi-bit quantizer \(k_bit=2"),
    (dict(kernel="magnitude_aware_sign"), r"'fc0'.*MagnitudeAwareSign.*mean \|x\|"),
    (dict(hidden_input="ste_tern"), r"'fc1'.*SteTern.*ternary"),
    (dict(hidden_input="ste_heaviside"), r"'fc1'.*SteHeaviside.*Heaviside"),
    (dict(hidden_input=None), r"'fc1'.*input_quantizer is None.*float layer in the middle"),
    (dict(first_input=None), r"'fc0'.*input_quantizer is None.*on the raw input"),
    (dict(kernel=None), r"'fc0'.*kernel_quantizer is None.*float layer"),
    (dict(bn=False), r"'fc1'.*reads the output of 'fc0' directly.*missing batch norm"),
    (dict(middle=tf.keras.layers.Dense(8, name="float_dense")), r"'float_dense' \(Dense\): a float layer in the middle"),
    (dict(middle=tf.keras.layers.ReLU(name="relu")), r"'relu' \(ReLU\): a float layer in the middle"),
    (dict(hidden_input=FixedPointInput(8, 7)), r"'fc1'.*FixedPointInput on a hidden layer"),
    # converted exactly before, then refused by the FINN build (the exact function's per-class output affine):
    (dict(bias=(False, True)), r"'fc1' \(QuantDense\): use_bias=True.*per-class bias reorders"),
    (dict(bias=(True, False)), r"'fc0' \(QuantDense\): use_bias=True.*use_bias=False"),
    (dict(tail=[tf.keras.layers.BatchNormalization(name="logits_bn")]),
     r"'logits_bn' \(BatchNormalization\): a batch norm on the logits.*LabelSelect"),
    (dict(tail=[tf.keras.layers.BatchNormalization(name="logits_bn"), tf.keras.layers.Activation("softmax")]),
     r"'logits_bn' \(BatchNormalization\): a batch norm on the logits"),
])
def test_refusals_name_layer_and_reason(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConversionError, match=pattern):
        convert(_mlp(**kwargs))


def test_same_padding_and_branches_refused() -> None:
    inp = tf.keras.Input((6, 6, 1))
    x = lq.layers.QuantConv2D(4, 3, padding="same", input_quantizer=FixedPointInput(), name="padded", **BIN)(inp)
    with pytest.raises(ConversionError, match=r"'padded'.*padding='same'"):
        convert(tf.keras.Model(inp, x))
    a = tf.keras.layers.Flatten()(inp)
    b = lq.layers.QuantDense(4, input_quantizer="ste_sign", **BIN)(a)
    c = lq.layers.QuantDense(4, input_quantizer="ste_sign", **BIN)(a)
    with pytest.raises(ConversionError, match="linear chains|does not take"):
        convert(tf.keras.Model(inp, tf.keras.layers.Add()([b, c])))


def test_saved_model_roundtrip_and_corrupt_files(tmp_path) -> None:
    model = build_larq_model("cnv_w1a1_larq", seed=3)
    _randomise_norms(model, np.random.default_rng(3))
    path = tmp_path / "cnv.h5"
    model.save(path, save_format="h5")
    loaded = load_keras_model(path)
    assert isinstance(loaded.get_layer("conv0").input_quantizer, FixedPointInput)
    a, b = convert(model).onnx_model, convert(loaded).onnx_model
    assert a.graph.SerializeToString() == b.graph.SerializeToString()
    bad = tmp_path / "bad.h5"
    bad.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ModelFileError, match=r"bad\.h5: not a loadable Keras model"):
        load_keras_model(bad)
    with pytest.raises(ModelFileError, match="not found"):
        load_keras_model(tmp_path / "missing.h5")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"not keras")
    with pytest.raises(ModelFileError, match=r"model\.onnx: expected a Keras model file ending in \.h5 or \.keras"):
        load_keras_model(other)
