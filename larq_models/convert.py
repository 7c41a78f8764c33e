"""Larq / Keras BNN -> QONNX, in the shape of graph bnnflow's Brevitas export gives FINN (models/export.py).

The graph takes raw pixels as float32 NCHW (1, C, H, W) named ``global_in`` and gives (1, classes) named
``global_out``, like the Brevitas export, so FINN's ``step_qonnx_to_finn`` and the rest of hw_builds/ take
it unchanged. Keras computes in NHWC; the graph is NCHW: conv kernels are transposed to OIHW, and the rows
of a QuantDense after a Flatten of a (H, W, C) map with H*W > 1 and C > 1 are permuted from Keras' (h, w, c)
order to the graph's (c, h, w) order.

Layer mapping (every other layer is refused with its name, see :class:`ConversionError`):

| Larq / Keras | QONNX |
| --- | --- |
| ``Rescaling(scale, offset)`` before the first quantizer | ``Mul`` (scale), ``Add`` (offset) |
| sign input quantizer (``ste_sign``, ``approx_sign``, ``swish_sign``: forward sign(x), sign(0) = +1) | ``BipolarQuant`` (scale 1) |
| ``FixedPointInput(bits, frac)`` on the first layer's input | ``Quant`` (scale 2**-frac, zero point 0, signed, narrow 0, ROUND) |
| ``QuantDense`` (no bias) with a sign kernel quantizer | ``BipolarQuant`` on the +-1 kernel, ``MatMul`` |
| ``QuantConv2D`` (valid padding, no dilation, no bias) with a sign kernel quantizer | ``BipolarQuant`` on the OIHW kernel, ``Conv`` |
| ``BatchNormalization`` (last axis) before a sign | ``BatchNormalization`` (inference: moving mean / variance) |
| ``MaxPooling2D`` between a batch norm and the next sign | ``BipolarQuant`` first, then ``MaxPool`` (sign is monotone, so they commute) |
| ``Flatten`` | ``Reshape`` to (1, -1) |
| ``TensorNorm`` (larq_models.layers) | ``Sub``, ``Div``, ``Mul``, ``Add`` (scalars) |
| ``Dropout``, linear ``Activation`` | nothing (identity at inference) |
| a final ``softmax`` | dropped: logits are compared before it; top-1 is unchanged |

Refused, naming the layer and why: a quantizer whose forward is not a plain sign (MagnitudeAwareSign scales
the weights by their mean magnitude, DoReFa / SteTern are multi-bit or ternary, SteHeaviside gives 0 / 1,
NoOp is no quantization), a float layer (Dense, Conv2D, a quantized layer without kernel or input
quantizer) in the middle, a sign whose input is not a batch norm's output (missing batch norm), any other
layer type, a non-linear graph (branches, several inputs or outputs), and what FINN's build would refuse after a
correct conversion: a binary layer with a bias (``use_bias=True``) and a batch norm on the logits (a per-class
affine after the last layer; top-1 would no longer be the argmax of the popcounts that FINN's LabelSelect takes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import larq as lq
import numpy as np
import onnx
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper

from larq_models.layers import CUSTOM_OBJECTS, FixedPointInput, TensorNorm

INPUT_NAME, OUTPUT_NAME = "global_in", "global_out"
QONNX_DOMAIN = "qonnx.custom_op.general"
OPSET = 20  # what Brevitas' TorchScript export writes here (models/export.py)
SIGN_QUANTIZERS = (lq.quantizers.SteSign, lq.quantizers.ApproxSign, lq.quantizers.SwishSign)
SIGN_FUNCTIONS = (lq.quantizers.ste_sign, lq.quantizers.approx_sign, lq.quantizers.swish_sign, lq.math.sign)
# Why each known non-sign Larq quantizer is refused (its forward is not sign(x) in {-1, +1}).
REFUSED_QUANTIZERS = {
    "MagnitudeAwareSign": "its forward is sign(x) times the mean |x| of each output channel (scaled weights); "
                          "FINN's binary MVAU and the XNOR reference need unscaled +-1 weights",
    "DoReFa": "it is a multi-bit quantizer (k_bit={k_bit}, mode={mode}); bnnflow's Larq path maps binary (sign) "
              "quantizers, and the first layer's 8-bit input as FixedPointInput",
    "SteTern": "it is ternary ({{-1, 0, +1}} with threshold {threshold}), not a sign",
    "SteHeaviside": "its forward is the Heaviside step (0 / 1), not a sign (-1 / +1)",
    "NoOp": "it does not quantize (forward identity), so the values stay full precision",
}


class ConversionError(ValueError):
    """The Keras model cannot be converted exactly; the message names the layer and why."""


class ModelFileError(ValueError):
    """A saved model file is missing, corrupt or needs objects bnnflow does not know."""


def load_keras_model(path: str | Path) -> tf.keras.Model:
    """A saved Keras / Larq model (``.h5`` or ``.keras``) with Larq's and bnnflow's custom objects.

    Raises ModelFileError naming the file for a missing, unreadable or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    if path.suffix not in (".h5", ".keras"):
        raise ModelFileError(f"{path}: expected a Keras model file ending in .h5 or .keras")
    try:
        with lq.context.quantized_scope(False):
            model = tf.keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
    except Exception as err:  # noqa: BLE001 - h5py / zipfile / Keras raise many kinds for a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelFileError(f"{path}: not a loadable Keras model ({type(err).__name__}: {first[:200]})") from err
    if not isinstance(model, tf.keras.Model):
        raise ModelFileError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    return model


def quantizer_kind(quantizer: Any, where: str) -> str:
    """'sign', 'fixed' (FixedPointInput) or 'none' for a Larq quantizer; ConversionError for any other."""
    if quantizer is None:
        return "none"
    if isinstance(quantizer, SIGN_QUANTIZERS) or quantizer in SIGN_FUNCTIONS:
        return "sign"
    if isinstance(quantizer, FixedPointInput):
        return "fixed"
    # a Quantizer object by its class, a plain function by its own name
    name = type(quantizer).__name__ if hasattr(quantizer, "get_config") else getattr(quantizer, "__name__", repr(quantizer))
    if name in REFUSED_QUANTIZERS:
        config = quantizer.get_config() if hasattr(quantizer, "get_config") else {}
        config.setdefault("k_bit", getattr(quantizer, "precision", "?"))
        why = REFUSED_QUANTIZERS[name].format(**{"mode": "?", "threshold": "?", **config})
        raise ConversionError(f"{where}: quantizer {name} is not supported: {why}")
    raise ConversionError(f"{where}: quantizer {name} is not supported: its forward pass is not known to be a "
                          f"plain sign (supported: SteSign, ApproxSign, SwishSign, and FixedPointInput on the input)")


@dataclass
class _Graph:
    """The ONNX graph under construction: nodes, initializers and a counter per op type for names."""

    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    def name(self, op: str) -> str:
        n = self.counts.get(op, 0)
        self.counts[op] = n + 1
        return f"{op}_{n}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = f"{base}_param{sum(1 for i in self.inits if i.name.startswith(base + '_param'))}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], params: list[np.ndarray] = (), domain: str = "", **attrs) -> str:
        base = self.name(op)
        names = list(inputs) + [self.const(base, p) for p in params]
        out = f"{base}_out0"
        self.nodes.append(helper.make_node(op, names, [out], name=base, domain=domain, **attrs))
        return out


def _bipolar(g: _Graph, tensor: str) -> str:
    return g.node("BipolarQuant", [tensor], [np.array([1.0], np.float32)], domain=QONNX_DOMAIN)


def _linear_chain(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The model's layers in forward order; ConversionError unless each feeds only the next."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConversionError(f"model {model.name!r}: {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                              "bnnflow converts single-input, single-output chains")
    layers = [layer for layer in model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    previous = model.inputs[0]
    for layer in layers:
        if isinstance(layer, tf.keras.Model):
            raise ConversionError(f"layer {layer.name!r} ({type(layer).__name__}): nested models are not supported; "
                                  "save the inner model flat")
        try:
            inp = layer.input
        except (AttributeError, ValueError) as err:
            raise ConversionError(f"layer {layer.name!r}: used more than once or not connected ({err})") from err
        if isinstance(inp, (list, tuple)) or inp is not previous:
            raise ConversionError(f"layer {layer.name!r} ({type(layer).__name__}): does not take the previous layer's "
                                  "output alone; bnnflow converts linear chains (no branches, no merges)")
        previous = layer.output
    return layers


@dataclass
class _State:
    """Where the walk stands: the current tensor, what it holds and the layers waiting for the next sign."""

    tensor: str
    shape: tuple[int, ...]  # NCHW without the batch: (C, H, W) or (F,)
    kind: str = "pixels"  # pixels | scaled | acc (binary layer output) | normed (batch norm output) | logits
    producer: str = "input"  # the Keras layer that made the current value (for messages)
    deferred: list = field(default_factory=list)  # MaxPool / Flatten after a batch norm, emitted after the sign
    keras_hwc: tuple[int, int, int] | None = None  # the (H, W, C) map a deferred Flatten flattens, Keras order
    quantized_layers: int = 0


def _emit_deferred(g: _Graph, st: _State) -> None:
    for op, layer in st.deferred:
        if op == "pool":
            size, strides = tuple(layer.pool_size), tuple(layer.strides)
            st.tensor = g.node("MaxPool", [st.tensor], kernel_shape=list(size), strides=list(strides),
                               pads=[0, 0, 0, 0], ceil_mode=0, dilations=[1, 1])
            c, h, w = st.shape
            st.shape = (c, (h - size[0]) // strides[0] + 1, (w - size[1]) // strides[1] + 1)
        else:  # flatten
            if len(st.shape) == 3:
                c, h, w = st.shape
                st.keras_hwc = (h, w, c)
            st.tensor = g.node("Reshape", [st.tensor], [np.array([1, -1], np.int64)])
            st.shape = (int(np.prod(st.shape)),)
    st.deferred = []


def _input_quant(g: _Graph, st: _State, layer, kind: str) -> None:
    """Emit the layer's input quantizer on the current value (then any deferred pool / flatten)."""
    where = f"layer {layer.name!r} ({type(layer).__name__})"
    first = st.quantized_layers == 0
    if st.kind in ("pixels", "scaled") and st.deferred and all(op == "flatten" for op, _ in st.deferred):
        _emit_deferred(g, st)  # the MLPs' input: flatten, then sign (Brevitas' order); after a sign the reverse
    if kind == "none":
        raise ConversionError(f"{where}: input_quantizer is None, so it multiplies full-precision activations "
                              f"(a float layer{' on the raw input' if first else ' in the middle'}); bnnflow needs "
                              "a sign input quantizer (or FixedPointInput on the first layer)")
    if kind == "fixed":
        if not first:
            raise ConversionError(f"{where}: FixedPointInput on a hidden layer gives multi-bit hidden activations; "
                                  "it is accepted only on the first layer's input")
        q = layer.input_quantizer
        st.tensor = g.node("Quant", [st.tensor], [np.array(2.0 ** -q.frac_bits, np.float32), np.array(0.0, np.float32),
                                                  np.array(float(q.bits), np.float32)],
                           domain=QONNX_DOMAIN, signed=1, narrow=0, rounding_mode="ROUND")
    else:
        if not first and st.kind != "normed":
            raise ConversionError(f"{where}: its sign input quantizer reads the output of {st.producer!r} directly; "
                                  "a BatchNormalization must come before each sign (missing batch norm)")
        st.tensor = _bipolar(g, st.tensor)
    _emit_deferred(g, st)


def _binary_kernel(layer, where: str) -> np.ndarray:
    kind = quantizer_kind(layer.kernel_quantizer, f"{where} kernel_quantizer")
    if kind != "sign":
        raise ConversionError(f"{where}: kernel_quantizer is {'None' if kind == 'none' else 'FixedPointInput'}, so its "
                              "weights are not binary (a float layer); bnnflow needs a sign kernel quantizer")
    kernel = np.asarray(layer.kernel_quantizer(tf.convert_to_tensor(layer.kernel)), dtype=np.float32)
    if not np.all(np.abs(kernel) == 1.0):
        raise ConversionError(f"{where}: the quantized kernel holds values other than -1 / +1")
    return kernel


def _check_plain(layer, where: str) -> None:
    act = getattr(layer, "activation", None)
    if act is not None and act is not tf.keras.activations.linear:
        raise ConversionError(f"{where}: activation {getattr(act, '__name__', act)!r} inside the layer is not "
                              "supported (a float non-linearity); use a batch norm and the next layer's sign")


def _quant_layer(g: _Graph, st: _State, layer) -> None:
    where = f"layer {layer.name!r} ({type(layer).__name__})"
    _check_plain(layer, where)
    kind = quantizer_kind(layer.input_quantizer, f"{where} input_quantizer")
    kernel = _binary_kernel(layer, where)
    if layer.use_bias:
        raise ConversionError(f"{where}: use_bias=True; FINN's binary MVAU and bnnflow's exact function take binary "
                              "layers without bias (a hidden layer's bias only shifts the batch norm after it, a last "
                              "layer's per-class bias reorders the classes): build it with use_bias=False")
    _input_quant(g, st, layer, kind)
    if isinstance(layer, lq.layers.QuantDense):
        if len(st.shape) != 1 or st.shape[0] != kernel.shape[0]:
            raise ConversionError(f"{where}: expects {kernel.shape[0]} input features, gets shape {st.shape}")
        if st.keras_hwc is not None:  # rows (h, w, c) -> (c, h, w), the graph's flatten order
            h, w, c = st.keras_hwc
            kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
            st.keras_hwc = None
        w_name = g.node("BipolarQuant", [], [kernel, np.array([1.0], np.float32)], domain=QONNX_DOMAIN)
        st.tensor = g.node("MatMul", [st.tensor, w_name])
        st.shape = (kernel.shape[1],)
    else:
        if len(st.shape) != 3:
            raise ConversionError(f"{where}: a convolution needs a (H, W, C) input, gets shape {st.shape}")
        if layer.padding != "valid" or tuple(layer.dilation_rate) != (1, 1) or layer.data_format != "channels_last" \
                or getattr(layer, "groups", 1) != 1:
            raise ConversionError(f"{where}: padding={layer.padding!r}, dilation={layer.dilation_rate}, "
                                  f"groups={getattr(layer, 'groups', 1)}: bnnflow maps valid, undilated, ungrouped "
                                  "channels_last convolutions (padding would feed zeros to a binary layer)")
        kh, kw, cin, cout = kernel.shape
        if st.shape[0] != cin:
            raise ConversionError(f"{where}: expects {cin} input channels, gets {st.shape[0]}")
        w_name = g.node("BipolarQuant", [], [kernel.transpose(3, 2, 0, 1).copy(), np.array([1.0], np.float32)],
                        domain=QONNX_DOMAIN)
        sh, sw = layer.strides
        st.tensor = g.node("Conv", [st.tensor, w_name], dilations=[1, 1], group=1, kernel_shape=[kh, kw],
                           pads=[0, 0, 0, 0], strides=[sh, sw])
        _, h, w = st.shape
        st.shape = (cout, (h - kh) // sh + 1, (w - kw) // sw + 1)
    st.kind, st.producer = "acc", layer.name
    st.quantized_layers += 1


def _batch_norm(g: _Graph, st: _State, layer) -> None:
    where = f"layer {layer.name!r} (BatchNormalization)"
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    rank = len(st.shape) + 1
    if axis not in (-1, rank - 1):
        raise ConversionError(f"{where}: normalises axis {layer.axis}; bnnflow maps batch norm over channels (last axis)")
    if st.kind != "acc":
        raise ConversionError(f"{where}: follows {st.producer!r}, not a binary QuantDense / QuantConv2D; bnnflow maps "
                              "batch norm directly after a binary layer (put any max pool after the batch norm)")
    n = st.shape[0]
    gamma = layer.gamma.numpy() if layer.scale else np.ones(n, np.float32)
    beta = layer.beta.numpy() if layer.center else np.zeros(n, np.float32)
    params = [np.asarray(p, np.float32) for p in (gamma, beta, layer.moving_mean.numpy(), layer.moving_variance.numpy())]
    st.tensor = g.node("BatchNormalization", [st.tensor], params, epsilon=float(layer.epsilon),
                       momentum=float(layer.momentum))
    st.kind, st.producer = "normed", layer.name


def _tensor_norm(g: _Graph, st: _State, layer: TensorNorm) -> None:
    if st.kind != "acc":
        raise ConversionError(f"layer {layer.name!r} (TensorNorm): follows {st.producer!r}; it is mapped only "
                              "directly after the last binary layer")
    f32 = lambda v: np.array([v], np.float32)  # noqa: E731
    std = np.sqrt(np.float32(layer.moving_variance.numpy()) + np.float32(layer.epsilon), dtype=np.float32)
    st.tensor = g.node("Sub", [st.tensor], [f32(layer.moving_mean.numpy())])
    st.tensor = g.node("Div", [st.tensor], [f32(std)])
    st.tensor = g.node("Mul", [st.tensor], [f32(layer.weight.numpy())])
    st.tensor = g.node("Add", [st.tensor], [f32(layer.bias.numpy())])
    st.kind, st.producer = "logits", layer.name


def _is_softmax(layer) -> bool:
    if isinstance(layer, tf.keras.layers.Softmax):
        return True
    return isinstance(layer, tf.keras.layers.Activation) and getattr(layer.activation, "__name__", "") == "softmax"


@dataclass
class Conversion:
    """The result: the ONNX model, the Keras layer that gives the compared logits, and what was mapped."""

    onnx_model: onnx.ModelProto
    logits_layer: str  # the Keras layer whose output the graph computes (before a dropped final softmax)
    input_shape_nchw: tuple[int, int, int]
    mapping: list[dict[str, str]]
    dropped_softmax: bool


def convert(model: tf.keras.Model) -> Conversion:
    """Convert a Keras / Larq BNN to a QONNX ModelProto (batch 1, NCHW raw-pixel input); ConversionError if not exact."""
    layers = _linear_chain(model)
    in_shape = tuple(model.inputs[0].shape[1:])
    if len(in_shape) not in (1, 3) or any(d is None for d in in_shape):
        raise ConversionError(f"model {model.name!r}: input shape {in_shape}; bnnflow needs a fixed (H, W, C) image input")
    if len(in_shape) == 1:
        raise ConversionError(f"model {model.name!r}: a flat input {in_shape}; bnnflow's models take (H, W, C) images "
                              "and flatten them in the model")
    h, w, c = in_shape
    g = _Graph()
    st = _State(tensor=INPUT_NAME, shape=(c, h, w))
    mapping: list[dict[str, str]] = []
    dropped_softmax = False
    logits_layer = layers[-1].name if layers else ""
    for index, layer in enumerate(layers):
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        before = len(g.nodes)
        last = index == len(layers) - 1
        if isinstance(layer, (lq.layers.QuantDense, lq.layers.QuantConv2D)):
            _quant_layer(g, st, layer)
        elif isinstance(layer, tf.keras.layers.BatchNormalization):
            _batch_norm(g, st, layer)
        elif isinstance(layer, TensorNorm):
            _tensor_norm(g, st, layer)
        elif isinstance(layer, tf.keras.layers.Rescaling):
            if st.kind != "pixels":
                raise ConversionError(f"{where}: Rescaling is mapped only on the raw input, before any other layer")
            scale, offset = np.float32(layer.scale), np.float32(layer.offset)
            st.tensor = g.node("Mul", [st.tensor], [np.array(scale, np.float32)])
            st.tensor = g.node("Add", [st.tensor], [np.array(offset, np.float32)])
            st.kind, st.producer = "scaled", layer.name
        elif isinstance(layer, tf.keras.layers.MaxPooling2D):
            if st.kind not in ("normed",) or layer.padding != "valid":
                raise ConversionError(f"{where}: a max pool is mapped between a batch norm and the next sign "
                                      f"(valid padding); here it follows {st.producer!r} ({st.kind})")
            st.deferred.append(("pool", layer))
        elif isinstance(layer, tf.keras.layers.Flatten):
            st.deferred.append(("flatten", layer))
        elif isinstance(layer, tf.keras.layers.Dropout) or (
                isinstance(layer, tf.keras.layers.Activation) and layer.activation is tf.keras.activations.linear):
            pass
        elif _is_softmax(layer) and last:
            dropped_softmax = True
            logits_layer = layers[index - 1].name if index else ""
        else:
            kind = "a float layer" if isinstance(layer, (tf.keras.layers.Dense, tf.keras.layers.Conv2D,
                                                         tf.keras.layers.Activation, tf.keras.layers.ReLU)) else \
                "a layer type bnnflow does not map"
            raise ConversionError(f"{where}: {kind}{' in the middle of the network' if not last else ''}; bnnflow "
                                  "converts QuantDense / QuantConv2D with sign quantizers, BatchNormalization, "
                                  "MaxPooling2D, Flatten, Rescaling (input), Dropout, TensorNorm and a final softmax")
        mapping.append({"layer": layer.name, "type": type(layer).__name__,
                        "onnx": " ".join(n.op_type for n in g.nodes[before:]) or
                                ("dropped (final softmax)" if dropped_softmax and last else "deferred / identity")})
    if st.quantized_layers == 0:
        raise ConversionError(f"model {model.name!r}: no QuantDense / QuantConv2D layer; nothing binary to build")
    if st.kind == "normed" and not st.deferred:
        raise ConversionError(f"layer {st.producer!r} (BatchNormalization): a batch norm on the logits scales and "
                              "shifts each class by its own constants, so top-1 is not the argmax of the last binary "
                              "layer's dot products that FINN's LabelSelect takes; end the model with the last "
                              "QuantDense, optionally TensorNorm (one scale and shift for every class) and a softmax")
    if st.kind not in ("acc", "logits") or st.deferred:
        raise ConversionError(f"model {model.name!r}: ends after {st.producer!r} with pending "
                              f"{[type(l).__name__ for _, l in st.deferred]}; the output must be the last binary "
                              "layer (optionally with TensorNorm / softmax)")
    # rename the last tensor to the graph output
    last_node = g.nodes[-1]
    last_node.output[0] = OUTPUT_NAME
    out_dim = st.shape[0] if len(st.shape) == 1 else int(np.prod(st.shape))
    graph = helper.make_graph(
        g.nodes, model.name or "larq_model",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, out_dim])],
        initializer=g.inits,
    )
    proto = helper.make_model(graph, producer_name="bnnflow.larq_models", producer_version=lq.__version__
                              if hasattr(lq, "__version__") else "larq",
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)])
    proto.ir_version = 9
    onnx.checker.check_model(proto)
    return Conversion(proto, logits_layer, (c, h, w), mapping, dropped_softmax)
