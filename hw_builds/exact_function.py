"""The network's function, defined once: the exported parameters (float32) in exact arithmetic.

A QONNX export of a bnnflow model (models/topologies.py) is read into an :class:`ExactNetwork`:

* pixels p in 0..255 are scaled as x = p * a + b with the graph's float32 constants a, b taken as the
  rationals they are (no rounding), then quantized by the input quantizer;
* each layer's integer dot product I = sum_j w_j q_j of its quantized weights w (Brevitas'
  ``binary_sign``: +1 at w >= 0, -1 below; 2-bit narrow: ``torch.round``, half to even, clamped to
  [-1, 1]) and its input codes q (value = q * s_in);
* batch norm y = (s_in * I - mean) * gamma / sqrt(var + eps) + beta, with gamma, beta, mean, var and
  eps the float32 values of the graph as rationals; sqrt is never rounded: y >= c is decided by
  comparing squares with their signs (:func:`_bn_at_least`);
* the activation quantizer of that y: binary code +1 iff y >= 0 (Brevitas' ``binary_sign``: sign(0) =
  +1); a multi-bit code round(y / s) clamped to [qmin, qmax] with half-way cases to even
  (``torch.round``), so the step from q to q + 1 happens at y / s = q + 1/2 inclusive for odd q,
  exclusive for even q;
* the last layer's I, through TensorNorm's positive scale, ranks the classes (top-1: lowest index
  among equal maxima).

Every boundary of every neuron then becomes an exact integer threshold on I (:func:`layer_thresholds`):
``I >= t`` for gamma > 0, ``I <= t`` for gamma < 0, and for a constant neuron (gamma = 0, or a boundary
outside the reachable range of I) a threshold that is always or never met. These are what the
hardware, FINN's execution and the XNOR reference compute (hw_builds/exact_thresholds.py sets them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

from host.refusal import RefusedInput

META_PROP = "bnnflow_exact_function"  # FINN model metadata: the JSON of ExactNetwork.thresholds_json()
# Brevitas' float32 forward differs from the exact function by at most this relative error in y
# (see float_bound): 16 roundings of 2**-24, generous for torch's fused batch norm (a multiply-add
# with alpha = gamma / sqrt(var + eps) and shift = beta - mean * alpha, each one rounding or two).
FLOAT32_REL_BOUND = 2.0**-20


class ExactFunctionError(RefusedInput):
    """The QONNX graph is not a network the exact definition covers; names layer, neuron and cause."""


def _frac(v) -> Fraction:
    """A float32 (or float) value as the exact rational it is."""
    return Fraction(float(np.float32(v)))


@dataclass(frozen=True)
class QuantSpec:
    """An activation quantizer: ``bipolar`` (code -1 / +1, +1 iff y >= 0) or ``int`` (scale, [qmin, qmax])."""

    kind: str  # "bipolar" | "int"
    scale: Fraction = Fraction(1)
    qmin: int = -1
    qmax: int = 1
    # FINN-ONNX input quantizer: a MultiThreshold's own steps (y >= t_j, ascending) instead of round-half-even's
    steps: tuple[Fraction, ...] | None = None

    def boundaries(self) -> list[tuple[Fraction, bool]]:
        """(c, inclusive) per step, ascending: the code passes step j iff y >= c (inclusive) or y > c."""
        if self.kind == "bipolar":
            return [(Fraction(0), True)]
        if self.steps is not None:
            return [(t, True) for t in self.steps]
        # round half to even: q + 1/2 goes up to q + 1 when q + 1 is even, i.e. when q is odd
        return [((q + Fraction(1, 2)) * self.scale, q % 2 != 0) for q in range(self.qmin, self.qmax)]

    def code(self, count: np.ndarray) -> np.ndarray:
        """Number of steps passed -> code value (int64): -1 / +1 for bipolar, qmin + count otherwise."""
        return 2 * count - 1 if self.kind == "bipolar" else self.qmin + count

    def to_json(self) -> dict:
        return {"kind": self.kind, "scale": str(self.scale), "qmin": self.qmin, "qmax": self.qmax,
                "steps": None if self.steps is None else [str(t) for t in self.steps]}

    @staticmethod
    def from_json(d: dict) -> QuantSpec:
        steps = d.get("steps")
        return QuantSpec(d["kind"], Fraction(d["scale"]), int(d["qmin"]), int(d["qmax"]),
                         None if steps is None else tuple(Fraction(t) for t in steps))


@dataclass
class ExactLayer:
    """One Linear / Conv layer: integer weights, input quantizer, batch norm and output quantizer."""

    weights: np.ndarray | None  # int64 (M, K), conv rows in FINN's im2col order (kh, kw, c); None from JSON
    in_quant: QuantSpec  # the codes q this layer reads (value q * scale)
    out_quant: QuantSpec | None  # None for the last layer
    bn: dict[str, list[Fraction]] | None  # gamma, beta, mean, var per neuron; None for the last layer
    eps: Fraction = Fraction(0)
    conv: tuple[int, int] | None = None  # (kernel, stride) of a conv layer
    pool: int | None = None  # max pool kernel = stride after the activation
    row_hash: list[str] = field(default_factory=list)  # per neuron: hash of its weight row (FINN mapping)
    i_range: np.ndarray | None = None  # int64 (M, 2): the reachable [min, max] of I per neuron
    direction: np.ndarray | None = None  # int64 (M,): +1 fires on I >= t, -1 on I <= t
    thresholds: np.ndarray | None = None  # int64 (M, T)
    # FINN-ONNX: a MultiThreshold straight on the layer's integer dot product (no float batch norm between), so
    # float32 execution decides exactly as the rationals do (no float ties); ``bn`` then encodes s_in * I >= T
    integer_thresholds: bool = False

    @property
    def out_features(self) -> int:
        return len(self.row_hash)


@dataclass
class ExactNetwork:
    """The exported network in exact arithmetic (see the module docstring)."""

    pixel_scale: tuple[Fraction, Fraction]  # x = p * a + b
    input_quant: QuantSpec
    input_thresholds: np.ndarray  # int64 (T,): step j passed iff pixel >= t_j
    layers: list[ExactLayer]
    nchw_input: bool = False  # CNV: the reference transposes to NHWC

    def thresholds_json(self) -> str:
        """Everything FINN's graph needs (no weights): thresholds, directions, row hashes, BN, quantizers."""
        return json.dumps({
            "pixel_scale": [str(v) for v in self.pixel_scale],
            "input_quant": self.input_quant.to_json(),
            "input_thresholds": self.input_thresholds.tolist(),
            "nchw_input": self.nchw_input,
            "layers": [{
                "in_quant": l.in_quant.to_json(),
                "out_quant": l.out_quant.to_json() if l.out_quant else None,
                "bn": {k: [str(v) for v in vs] for k, vs in l.bn.items()} if l.bn else None,
                "eps": str(l.eps), "conv": l.conv, "pool": l.pool, "row_hash": l.row_hash,
                "integer_thresholds": l.integer_thresholds,
                "i_range": l.i_range.tolist(),
                "direction": None if l.direction is None else l.direction.tolist(),
                "thresholds": None if l.thresholds is None else l.thresholds.tolist(),
            } for l in self.layers],
        })

    @staticmethod
    def from_json(text: str) -> ExactNetwork:
        d = json.loads(text)
        layers = []
        for l in d["layers"]:
            layers.append(ExactLayer(
                weights=None, in_quant=QuantSpec.from_json(l["in_quant"]),
                out_quant=QuantSpec.from_json(l["out_quant"]) if l["out_quant"] else None,
                bn={k: [Fraction(v) for v in vs] for k, vs in l["bn"].items()} if l["bn"] else None,
                eps=Fraction(l["eps"]), conv=tuple(l["conv"]) if l["conv"] else None, pool=l["pool"],
                row_hash=list(l["row_hash"]), i_range=np.array(l["i_range"], dtype=np.int64).reshape(-1, 2),
                direction=None if l["direction"] is None else np.array(l["direction"], dtype=np.int64),
                thresholds=None if l["thresholds"] is None else np.array(l["thresholds"], dtype=np.int64),
                integer_thresholds=bool(l.get("integer_thresholds", False))))
        return ExactNetwork(tuple(Fraction(v) for v in d["pixel_scale"]), QuantSpec.from_json(d["input_quant"]),
                            np.array(d["input_thresholds"], dtype=np.int64), layers, bool(d.get("nchw_input", False)))


def row_hash(row: np.ndarray) -> str:
    """A short fingerprint of an integer weight row (to match FINN's rows, possibly negated, to these)."""
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(row, dtype=np.int8).tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------- exact decisions

def _bn_at_least(num: Fraction, var_eps: Fraction, c_minus_beta: Fraction, inclusive: bool) -> bool:
    """Decide num / sqrt(var_eps) >= c_minus_beta (or >) exactly: squares compared with sign cases."""
    lhs_sign = (num > 0) - (num < 0)
    rhs_sign = (c_minus_beta > 0) - (c_minus_beta < 0)
    if lhs_sign != rhs_sign:
        return lhs_sign > rhs_sign
    if lhs_sign == 0:  # both zero: equal
        return inclusive
    a, b = num * num, c_minus_beta * c_minus_beta * var_eps  # |lhs|^2 vs |rhs|^2, both sides of one sign
    if a == b:
        return inclusive
    return (a > b) if lhs_sign > 0 else (a < b)


def neuron_thresholds(gamma: Fraction, beta: Fraction, mean: Fraction, var_eps: Fraction, s_in: Fraction,
                      boundaries: list[tuple[Fraction, bool]], lo: int, hi: int, where: str) -> tuple[int, list[int]]:
    """(direction, thresholds on the integer I in [lo, hi]) of one neuron; see layer_thresholds.

    direction +1: step j passed iff I >= t_j (t_j = lo: always, hi + 1: never); direction -1: iff
    I <= t_j (hi: always, lo - 1: never). gamma = 0 gives direction +1 and always / never.
    """
    if var_eps <= 0:
        raise ExactFunctionError(f"{where}: batch norm var + eps = {float(var_eps)} is not positive")

    def passes(i: int, c: Fraction, inclusive: bool) -> bool:
        return _bn_at_least((s_in * i - mean) * gamma, var_eps, c - beta, inclusive)

    if gamma == 0:
        return 1, [lo if passes(lo, c, inc) else hi + 1 for c, inc in boundaries]
    direction = 1 if gamma > 0 else -1
    out = []
    for c, inc in boundaries:
        if direction > 0:  # smallest i in [lo, hi] that passes, hi + 1 if none
            a, b = lo, hi + 1
            while a < b:
                mid = (a + b) // 2
                a, b = (a, mid) if passes(mid, c, inc) else (mid + 1, b)
            out.append(a)
        else:  # largest i in [lo, hi] that passes, lo - 1 if none
            a, b = lo - 1, hi
            while a < b:
                mid = (a + b + 1) // 2
                a, b = (mid, b) if passes(mid, c, inc) else (a, mid - 1)
            out.append(a)
    return direction, out


def layer_thresholds(layer: ExactLayer, index: int) -> None:
    """Fill ``direction``, ``thresholds`` (M, T) and ``i_range`` (M, 2) of a hidden layer, exactly."""
    w = layer.weights
    qlo, qhi = (-1, 1) if layer.in_quant.kind == "bipolar" else (layer.in_quant.qmin, layer.in_quant.qmax)
    lo = np.minimum(w * qlo, w * qhi).sum(axis=1)
    hi = np.maximum(w * qlo, w * qhi).sum(axis=1)
    layer.i_range = np.stack([lo, hi], axis=1).astype(np.int64)
    if layer.out_quant is None:
        return
    bounds = layer.out_quant.boundaries()
    dirs, thr = [], []
    for n in range(len(w)):
        g, b, m, v = (layer.bn[k][n] for k in ("gamma", "beta", "mean", "var"))
        d, t = neuron_thresholds(g, b, m, v + layer.eps, layer.in_quant.scale, bounds, int(lo[n]), int(hi[n]),
                                 f"layer {index} neuron {n}")
        dirs.append(d)
        thr.append(t)
    layer.direction = np.array(dirs, dtype=np.int64)
    layer.thresholds = np.array(thr, dtype=np.int64).reshape(len(w), len(bounds))


def input_thresholds(scale: tuple[Fraction, Fraction], quant: QuantSpec) -> np.ndarray:
    """Thresholds on the pixel p in 0..255 (256 = never) of the input quantizer applied to p * a + b."""
    a, b = scale
    if a <= 0:
        raise ExactFunctionError(f"input scaling x = p * {float(a)} + {float(b)} is not increasing in the pixel")
    out = []
    for c, inc in quant.boundaries():
        t = next((p for p in range(256) if (p * a + b >= c if inc else p * a + b > c)), 256)
        out.append(t)
    return np.array(out, dtype=np.int64)


# ----------------------------------------------------------------------------------------- QONNX reading

def _quant_of_node(model, node, where: str) -> QuantSpec:
    """A BipolarQuant / Quant node on activations -> QuantSpec (scale > 0, zero point 0, signed)."""
    if node.op_type == "BipolarQuant":
        scale = model.get_initializer(node.input[1])
        if scale is None or np.any(np.asarray(scale) != 1):
            raise ExactFunctionError(f"{where}: BipolarQuant with scale {scale} (only 1 is supported)")
        return QuantSpec("bipolar")
    if node.op_type == "Quant":
        scale, zp, bits = (model.get_initializer(n) for n in node.input[1:4])
        attrs = {a.name: a for a in node.attribute}
        rounding = attrs["rounding_mode"].s.decode() if "rounding_mode" in attrs else "ROUND"
        if scale is None or zp is None or bits is None or np.size(scale) != 1 or np.any(zp != 0) or rounding != "ROUND":
            raise ExactFunctionError(f"{where}: Quant node {node.name} is not per-tensor, zero point 0, ROUND")
        signed = attrs["signed"].i if "signed" in attrs else 1
        narrow = attrs["narrow"].i if "narrow" in attrs else 0
        nb = int(np.asarray(bits).item())
        if not signed:
            raise ExactFunctionError(f"{where}: unsigned activation quantizer {node.name} is not supported")
        qmin, qmax = -(1 << (nb - 1)) + (1 if narrow else 0), (1 << (nb - 1)) - 1
        s = _frac(np.asarray(scale).item())
        if s <= 0:
            raise ExactFunctionError(f"{where}: quantizer scale {float(s)} is not positive")
        return QuantSpec("int", s, qmin, qmax)
    raise ExactFunctionError(f"{where}: {node.op_type} is not an activation quantizer")


def _quant_weights(model, node, where: str) -> np.ndarray:
    """The integer weights of a BipolarQuant / Quant node on a float initializer (scale must be 1)."""
    w = np.asarray(model.get_initializer(node.input[0]), dtype=np.float32)
    if node.op_type == "BipolarQuant":
        scale = model.get_initializer(node.input[1])
        if np.any(np.asarray(scale) != 1):
            raise ExactFunctionError(f"{where}: weight scale is not 1")
        return np.where(w >= 0, 1, -1).astype(np.int64)  # binary_sign: +1 at 0
    q = _quant_of_node(model, node, where)
    if q.scale != 1:
        raise ExactFunctionError(f"{where}: weight scale {float(q.scale)} is not 1")
    return np.clip(np.round(w.astype(np.float64)), q.qmin, q.qmax).astype(np.int64)  # np.round: half to even


# FINN-ONNX (what FINN's ConvertQONNXtoFINN writes, and older FINN flows exported): weights are integer-valued
# float initializers with a datatype annotation, activations MultiThreshold nodes. Read here for w1a1: bipolar
# (or narrow 2-bit) weights and the bipolar sign 2 * [x >= t] - 1, with t = 0 after a float batch norm (the sign
# of the batch norm's output, as ConvertQONNXtoFINN writes a BipolarQuant) or any t on an integer dot product.
FINN_WEIGHT_TYPES = ("BIPOLAR", "TERNARY", "INT2")


def _finn_weights(model, name: str, where: str) -> np.ndarray:
    """The integer weights of a FINN-ONNX layer: a constant annotated BIPOLAR / TERNARY / INT2 with values in -1..1."""
    w = np.asarray(model.get_initializer(name), dtype=np.float32)
    dtype = model.get_tensor_datatype(name).name
    if dtype not in FINN_WEIGHT_TYPES:
        raise ExactFunctionError(f"{where}: a float layer: its weights {name!r} are not a BipolarQuant / Quant of "
                                 f"a constant (the weight quantizer is missing), nor a FINN-ONNX constant annotated "
                                 f"{' / '.join(FINN_WEIGHT_TYPES)} (it is {dtype})")
    if not np.all(np.isin(w, (-1.0, 0.0, 1.0))) or (dtype == "BIPOLAR" and np.any(w == 0)):
        bad = np.unique(w[~np.isin(w, (-1.0, 1.0) if dtype == "BIPOLAR" else (-1.0, 0.0, 1.0))])[:3]
        raise ExactFunctionError(f"{where}: its weights {name!r} annotated {dtype} hold {bad.tolist()}: the XNOR reference "
                                 f"computes bipolar (-1, +1) and narrow 2-bit (-1, 0, +1) weights only")
    return w.astype(np.int64)


def _multithreshold_parts(model, node, where: str) -> tuple[np.ndarray, float, float]:
    """A MultiThreshold's thresholds (C, T) float32 (finite), out_scale and out_bias."""
    from onnx.helper import get_attribute_value

    thr = model.get_initializer(node.input[1])
    attrs = {a.name: get_attribute_value(a) for a in node.attribute}
    scale, bias = float(attrs.get("out_scale", 1.0)), float(attrs.get("out_bias", 0.0))
    if thr is None:
        raise ExactFunctionError(f"{where}: thresholds {node.input[1]!r} are not a constant")
    thr = np.asarray(thr, dtype=np.float32)
    if thr.ndim != 2 or not np.all(np.isfinite(thr)):
        raise ExactFunctionError(f"{where}: thresholds of shape {list(thr.shape)} are not finite (channels, steps)")
    return thr, scale, bias


def _input_multithreshold(model, node, where: str) -> tuple[tuple[Fraction, ...], int] | None:
    """A multi-step MultiThreshold on the mapped pixels (FINN's conversion of a multi-bit input Quant): its steps
    (ascending, one set for every channel) and out_bias, the code of count 0 (out_scale 1); None for one step."""
    thr, scale, bias = _multithreshold_parts(model, node, where)
    if thr.shape[1] == 1 and (scale, bias) == (2.0, -1.0):
        return None
    if scale != 1.0 or bias != round(bias) or np.any(thr != thr[:1]) or np.any(np.diff(thr[0]) < 0):
        raise ExactFunctionError(f"{where}: input thresholds with output {scale:g} * count + {bias:g}: a multi-step "
                                 f"input MultiThreshold is read with one ascending set of steps for every channel "
                                 f"and integer codes (out_scale 1, integer out_bias)")
    return tuple(_frac(t) for t in thr[0]), int(bias)


def _multithreshold(model, node, where: str) -> np.ndarray:
    """A FINN-ONNX MultiThreshold read as a bipolar sign: its thresholds (C,) or (1,) float32, one per channel.

    Refuses (ExactFunctionError) anything but one threshold per channel and the output 2 * count - 1: a multi-bit
    MultiThreshold is not read (its steps are per neuron, not one quantizer's boundaries).
    """
    thr, scale, bias = _multithreshold_parts(model, node, where)
    if thr.shape[1] != 1 or (scale, bias) != (2.0, -1.0):
        steps = thr.shape[-1] if thr.ndim else 0
        raise ExactFunctionError(
            f"{where}: {steps} threshold(s) per channel, output {scale:g} * count + {bias:g}: a FINN-ONNX graph is "
            f"read for bipolar activations only (one threshold per channel, output 2 * count - 1, i.e. out_dtype "
            f"BIPOLAR); a multi-bit MultiThreshold is refused (export the model as QONNX instead)")
    return thr[:, 0]


def _check_chain(node, data: str | None, where: str) -> None:
    """Refuse (ExactFunctionError) a node whose data input (input 0) is not ``data``, the output of the node read
    before it: the nodes are read in list order as one chain, so a node reading an earlier tensor (skipping a layer),
    a branch or a second input is outside the definition."""
    if not node.input or node.input[0] != data:
        got = node.input[0] if node.input else None
        raise ExactFunctionError(f"{where}: reads {got!r}, not {data!r} (the output of the node before it): the "
                                 f"graph is read as one chain of layers in node order, each node reading the "
                                 f"previous one's output; a skip, branch or reordered node is not")


def _check_layout(model, node, where: str) -> None:
    """Refuse a MultiThreshold whose data_layout is not NCHW (channels on axis 1, what the reader assumes)."""
    from onnx.helper import get_attribute_value

    layout = next((get_attribute_value(a) for a in node.attribute if a.name == "data_layout"), b"NCHW")
    layout = layout.decode() if isinstance(layout, bytes) else str(layout)
    shape = model.get_tensor_shape(node.input[0])
    if layout != "NCHW" and not (layout == "NC" and shape is not None and len(shape) == 2):
        raise ExactFunctionError(f"{where}: data_layout {layout!r}: thresholds are read per channel on axis 1 "
                                 f"(data_layout NCHW, the default); a channels-last MultiThreshold is not read")


def _check_dot_product_exact(w: np.ndarray, in_quant: QuantSpec, where: str) -> None:
    """Refuse (ExactFunctionError) thresholds straight on a dot product whose float32 value s_in * I is not exact:
    exact iff s_in = 1 / 2^k and |I| < 2^24, with |I| <= max over neurons of sum |w| * max |input code|.
    ``w``: (M, K) int64 weights; ``in_quant``: the layer's input quantizer."""
    s_in = in_quant.scale
    i_max = int(np.abs(w).sum(axis=1).max()) * max(abs(in_quant.qmin), abs(in_quant.qmax))
    if s_in.numerator != 1 or s_in.denominator & (s_in.denominator - 1) or i_max >= 1 << 24:
        raise ExactFunctionError(f"{where}: the dot product's float32 value s_in * I (s_in = {s_in}, |I| up to "
                                 f"{i_max}) is not exact (a scale 1 / 2^k and |I| < 2^24 are needed), so its "
                                 f"thresholds are not decided exactly")


def _check_not_hidden(tail: list, where: str) -> None:
    """Refuse a node after a layer's dot product that is not the output affine because a quantizer, threshold or
    layer still follows: something other than a batch norm between a hidden layer and its activation."""
    later = next((n for n in tail if n.op_type in ("MultiThreshold", "BipolarQuant", "Quant", "MatMul", "Conv")),
                 None)
    if later is not None:
        raise ExactFunctionError(f"{where}: stands between a hidden layer's dot product and its activation "
                                 f"{later.name} ({later.op_type}): only a BatchNormalization (or nothing) may come "
                                 f"between a layer and its activation quantizer / MultiThreshold")


def exact_network(model) -> ExactNetwork:
    """Read a QONNX ModelWrapper (the export stage's model.onnx) into an ExactNetwork with thresholds.

    A FINN-ONNX graph (integer-annotated weight constants, MultiThreshold activations; see
    :data:`FINN_WEIGHT_TYPES`, :func:`_multithreshold`) is read into the same definition: a MultiThreshold
    after a batch norm with threshold 0 is the BipolarQuant it was converted from; one straight on a layer's
    dot product (value s_in * I, exact in float32) decides s_in * I >= t, i.e. I >= ceil(t / s_in), and is
    marked ``integer_thresholds`` (no float ties there). The nodes must form one chain in node order (each
    reading the previous one's output). Raises ExactFunctionError naming the node / layer / neuron for graphs
    outside the definition.
    """
    mul = Fraction(1)
    add = Fraction(0)
    input_quant = None
    layers: list[ExactLayer] = []
    pending: dict | None = None  # the layer waiting for its BN and quantizer
    current_quant: QuantSpec | None = None
    nchw = False
    consumed = {n.output[0] for n in model.graph.node if n.op_type in ("BipolarQuant", "Quant")
                and model.get_initializer(n.input[0]) is not None}
    tail: list = []
    input_codes = False  # a FINN-ONNX multi-step input MultiThreshold read: its Add / Mul until the first layer
    graph_inputs = [i.name for i in model.graph.input if model.get_initializer(i.name) is None]
    data = graph_inputs[0] if graph_inputs else None  # the tensor the next node of the chain must read
    for index, node in enumerate(model.graph.node):
        op, where = node.op_type, f"node {node.name} ({node.op_type})"
        if op in ("BipolarQuant", "Quant") and model.get_initializer(node.input[0]) is not None:
            continue  # a weight quantizer, read with its MatMul / Conv
        _check_chain(node, data, where)
        data = node.output[0]
        if op == "MultiThreshold":
            _check_layout(model, node, where)
        if op in ("Reshape", "Flatten", "MaxPool", "Transpose", "Identity"):
            if op == "MaxPool":
                if not layers or pending is not None:  # layers[-1] must be the layer whose codes it pools
                    raise ExactFunctionError(f"{where}: max pool not directly on a layer's quantized activation")
                attrs = {a.name: list(a.ints) for a in node.attribute}
                k = attrs.get("kernel_shape", [2])[0]
                if attrs.get("strides", [k])[0] != k:
                    raise ExactFunctionError(f"{where}: only max pools with stride = kernel are supported")
                layers[-1].pool = int(k)
            continue
        if input_quant is None and op in ("Mul", "Sub", "Add", "Div"):
            c = model.get_initializer(node.input[1])
            if c is None or np.size(c) != 1:
                raise ExactFunctionError(f"{where}: input scaling must be by scalar constants")
            c = _frac(np.asarray(c).item())
            if op == "Mul":
                mul, add = mul * c, add * c
            elif op == "Div":
                mul, add = mul / c, add / c
            else:
                add = add + (c if op == "Add" else -c)
            continue
        if op == "MultiThreshold" and input_quant is None and (steps := _input_multithreshold(model, node, where)):
            # codes qmin + count (FINN writes the code of count 0 as out_bias or as an Add after it), value code * s
            t, qmin = steps
            input_quant = current_quant = QuantSpec("int", Fraction(1), qmin, qmin + len(t), t)
            input_codes = True
            continue
        if input_codes and not layers and pending is None and op in ("Add", "Mul"):
            c = model.get_initializer(node.input[1])
            if c is None or np.size(c) != 1:
                raise ExactFunctionError(f"{where}: the input codes' offset / scale must be a scalar constant")
            c, q = _frac(np.asarray(c).item()), input_quant
            if op == "Add" and c.denominator == 1 and q.scale == 1:
                q = QuantSpec("int", q.scale, q.qmin + int(c), q.qmax + int(c), q.steps)
            elif op == "Mul" and c > 0:
                q = QuantSpec("int", q.scale * c, q.qmin, q.qmax, q.steps)
            else:
                raise ExactFunctionError(f"{where}: the input codes are offset by a non-integer or after scaling, "
                                         f"or scaled by a non-positive constant")
            input_quant = current_quant = q
            continue
        if op == "MultiThreshold":
            thr = _multithreshold(model, node, where)
            q = QuantSpec("bipolar")
            if input_quant is None:
                if np.any(thr != 0):
                    raise ExactFunctionError(f"{where}: input threshold(s) {np.unique(thr)[:3].tolist()}: only 0 (the "
                                             f"sign of the mapped pixel) is read; fold the threshold into the "
                                             f"declared pixel_bias instead")
                input_quant = current_quant = q
            elif pending is not None and pending["bn"] is not None:
                if np.any(thr != 0):
                    raise ExactFunctionError(
                        f"{where}: threshold(s) {np.unique(thr[thr != 0])[:3].tolist()} after a float batch norm: "
                        f"only 0 (the sign of the batch norm's output, as ConvertQONNXtoFINN writes a BipolarQuant) "
                        f"is read; a nonzero float threshold on a float value has no bound on float32's error here")
                layers.append(ExactLayer(pending["w"], pending["in_quant"], q, pending["bn"], pending["eps"],
                                         pending["conv"]))
                pending, current_quant = None, q
            elif pending is not None:  # straight on the dot product: s_in * I >= t, exact in float32
                m = len(pending["w"])
                if thr.shape[0] not in (1, m):
                    raise ExactFunctionError(f"{where}: {thr.shape[0]} thresholds for {m} neurons")
                _check_dot_product_exact(pending["w"], pending["in_quant"], where)
                thr = np.broadcast_to(thr, (m,))
                bn = {"gamma": [Fraction(1)] * m, "beta": [Fraction(0)] * m, "mean": [_frac(t) for t in thr],
                      "var": [Fraction(1)] * m}
                layers.append(ExactLayer(pending["w"], pending["in_quant"], q, bn, Fraction(0), pending["conv"],
                                         integer_thresholds=True))
                pending, current_quant = None, q
            else:
                raise ExactFunctionError(f"{where}: a MultiThreshold without a preceding layer")
            continue
        if op in ("BipolarQuant", "Quant"):
            q = _quant_of_node(model, node, where)
            if input_quant is None:
                input_quant = current_quant = q
            elif pending is not None and pending.get("bn") is not None:
                layer = ExactLayer(pending["w"], pending["in_quant"], q, pending["bn"], pending["eps"], pending["conv"])
                layers.append(layer)
                pending, current_quant = None, q
            else:
                raise ExactFunctionError(f"{where}: activation quantizer without a preceding layer + batch norm")
            continue
        if op in ("MatMul", "Conv"):
            if current_quant is None:
                raise ExactFunctionError(f"{where}: a float layer on the unquantized pixels (no input quantizer "
                                         f"before it); every layer's input must be quantized codes")
            if pending is not None:
                raise ExactFunctionError(f"{where}: follows another layer without the batch norm and activation "
                                         f"quantizer between them")
            wnode = model.find_producer(node.input[1])
            if wnode is None and model.get_initializer(node.input[1]) is not None:  # FINN-ONNX: annotated constant
                w = _finn_weights(model, node.input[1], where)
            elif wnode is None or wnode.op_type not in ("BipolarQuant", "Quant") or wnode.output[0] not in consumed:
                raise ExactFunctionError(f"{where}: a float layer: its weights {node.input[1]!r} are not a "
                                         f"BipolarQuant / Quant of a constant (the weight quantizer is missing)")
            else:
                w = _quant_weights(model, wnode, f"{where} weights")
            conv = None
            if op == "MatMul":
                w = w.T  # (K, M) -> (M, K)
            else:
                from onnx.helper import get_attribute_value

                attrs = {a.name: get_attribute_value(a) for a in node.attribute}
                if any(attrs.get("pads", [0])) or attrs.get("group", 1) != 1 or any(
                        d != 1 for d in attrs.get("dilations", [1])):
                    raise ExactFunctionError(f"{where}: only unpadded, ungrouped, undilated convs are supported")
                conv = (int(w.shape[2]), int(attrs.get("strides", [1])[0]))
                w = w.transpose(0, 2, 3, 1).reshape(len(w), -1)  # (M, C, KH, KW) -> (M, KH*KW*C)
                nchw = True
            pending = {"w": w, "in_quant": current_quant, "conv": conv, "bn": None, "eps": Fraction(0)}
            continue
        if op == "BatchNormalization" and pending is not None and pending["bn"] is None:
            gamma, beta, mean, var = (np.asarray(model.get_initializer(n), dtype=np.float32) for n in node.input[1:5])
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            pending["bn"] = {k: [_frac(v) for v in arr] for k, arr in
                             (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var))}
            pending["eps"] = _frac(eps)
            continue
        if pending is not None and pending["bn"] is None:
            tail = list(model.graph.node)[index:]  # the last layer's outputs: TensorNorm's Sub / Div / Mul / Add
            _check_not_hidden(tail, where)
            break
        raise ExactFunctionError(f"{where}: node not covered by the exact definition")
    if input_quant is None:
        raise ExactFunctionError("no input quantizer found")
    if pending is None or pending["bn"] is not None:
        raise ExactFunctionError("the graph does not end in a quantized layer without batch norm")
    for position, node in enumerate(tail):  # the output affine must keep the order of the last layer's I
        if position:  # (the first one was checked in the loop above)
            _check_chain(node, data, f"node {node.name} ({node.op_type})")
            data = node.output[0]
        if node.op_type not in ("Mul", "Div", "Add", "Sub"):
            raise ExactFunctionError(f"node {node.name} ({node.op_type}): only Mul / Div / Add / Sub by constants may "
                                     f"follow the last layer")
        c = model.get_initializer(node.input[1]) if len(node.input) > 1 else None
        if node.op_type in ("Mul", "Div") and (c is None or np.any(np.asarray(c) <= 0)):
            raise ExactFunctionError(f"node {node.name} ({node.op_type}): the output scale is not a positive "
                                     f"constant, so top-1 would not be the largest dot product of the last layer")
        # c - x reverses the order and a per-class constant reorders the classes: one value for every class
        if c is None or model.get_initializer(node.input[0]) is not None or np.unique(np.asarray(c)).size != 1:
            raise ExactFunctionError(f"node {node.name} ({node.op_type}): the output affine is not by one constant "
                                     f"for every class (second input), so top-1 would not be the largest dot "
                                     f"product of the last layer")
    outputs = [o.name for o in model.graph.output]
    if outputs != [data]:
        raise ExactFunctionError(f"graph output(s) {outputs} are not the end of the chain of layers ({data!r}): "
                                 f"the class scores must be the last layer's output (after its output affine)")
    layers.append(ExactLayer(pending["w"], pending["in_quant"], None, None, conv=pending["conv"]))
    net = ExactNetwork((mul, add), input_quant, input_thresholds((mul, add), input_quant), layers, nchw)
    for i, layer in enumerate(layers):
        layer.row_hash = [row_hash(r) for r in layer.weights]
        layer_thresholds(layer, i)
    return net


def exact_network_from_file(path) -> ExactNetwork:
    """:func:`exact_network` of a QONNX file."""
    from qonnx.core.modelwrapper import ModelWrapper

    return exact_network(ModelWrapper(str(path)))


# ----------------------------------------------------------------------------------------- evaluation

def _steps(i: np.ndarray, direction: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """(N, ..., M) integers -> number of steps passed per neuron, with (M,) directions and (M, T) thresholds."""
    ge = (i[..., None] >= thr).sum(-1)
    le = (i[..., None] <= thr).sum(-1)
    return np.where(direction > 0, ge, le)


def exact_forward(net: ExactNetwork, x_uint8: np.ndarray) -> dict[str, np.ndarray]:
    """The exact function on raw pixels (N, C, H, W) uint8: per layer ``layer{i}.I`` int64 and codes.

    ``input_codes``: the input quantizer's codes, (N, K) or NHWC; ``layer{i}.I``: (N, M) or NHWC
    (N, OH, OW, M) dot products of Brevitas' weights with the layer's input codes; ``layer{i}.codes``:
    the output codes before pooling; ``I_last`` the last layer's I.
    """
    x = np.asarray(x_uint8).astype(np.int64)
    q = net.input_quant.code(_steps(x, np.ones(1, np.int64), net.input_thresholds[None, :]))
    if net.nchw_input:
        q = q.transpose(0, 2, 3, 1)  # NHWC
    else:
        q = q.reshape(len(q), -1)
    out: dict[str, np.ndarray] = {"input_codes": q}
    for i, layer in enumerate(net.layers):
        w = layer.weights
        if layer.conv is not None:
            if q.ndim == 2:
                raise ExactFunctionError(f"layer {i}: conv after a dense layer")
            k, s = layer.conv
            win = np.lib.stride_tricks.sliding_window_view(q, (k, k), axis=(1, 2))[:, ::s, ::s]  # (N,OH,OW,C,k,k)
            win = win.transpose(0, 1, 2, 4, 5, 3).reshape(*win.shape[:3], -1)  # (N, OH, OW, k*k*C)
            acc = win @ w.T
        else:
            acc = q.reshape(len(q), -1) @ w.T
        out[f"layer{i}.I"] = acc
        if layer.out_quant is None:
            out["I_last"] = acc
            break
        codes = layer.out_quant.code(_steps(acc, layer.direction, layer.thresholds))
        out[f"layer{i}.codes"] = codes
        if layer.pool:
            p = layer.pool
            n, h, wd, m = codes.shape
            codes = codes[:, : h // p * p, : wd // p * p].reshape(n, h // p, p, wd // p, p, m).max(axis=(2, 4))
        q = codes
    return out


def pre_activation(layer: ExactLayer, n: int, i: int, digits: int = 40) -> Decimal:
    """y of neuron n at integer I = i, to ``digits`` significant digits (for margins, not decisions)."""
    g, b, m, v = (layer.bn[k][n] for k in ("gamma", "beta", "mean", "var"))
    with localcontext() as ctx:
        ctx.prec = digits
        num = (layer.in_quant.scale * i - m) * g
        y = Decimal(num.numerator) / Decimal(num.denominator) / (
            Decimal((v + layer.eps).numerator) / Decimal((v + layer.eps).denominator)).sqrt()
        return y + Decimal(b.numerator) / Decimal(b.denominator)


def float_bound(layer: ExactLayer, n: int, i: int) -> float:
    """Brevitas' float32 error bound on y of neuron n at I = i: FLOAT32_REL_BOUND * (|terms| summed)."""
    g, b, m, v = (float(layer.bn[k][n]) for k in ("gamma", "beta", "mean", "var"))
    s = float(layer.in_quant.scale)
    return FLOAT32_REL_BOUND * ((abs(s * i) + abs(m)) * abs(g) / np.sqrt(v + float(layer.eps)) + abs(b))


def nearest_boundary(layer: ExactLayer, n: int, i: int) -> tuple[float, float, float]:
    """(margin |y - c| to the nearest boundary, that boundary c, float bound) of neuron n at I = i."""
    y = pre_activation(layer, n, i)
    best = None
    for c, _ in layer.out_quant.boundaries():
        with localcontext() as ctx:
            ctx.prec = 40
            margin = abs(y - Decimal(c.numerator) / Decimal(c.denominator))
        if best is None or margin < best[0]:
            best = (margin, c)
    return float(best[0]), float(best[1]), float_bound(layer, n, i)


def near_boundary_images(net: ExactNetwork, x_uint8: np.ndarray) -> np.ndarray:
    """(N,) bool: images whose exact path has a hidden pre-activation within Brevitas' float32 bound of a
    boundary, where Brevitas' float forward may legitimately differ from the exact function (float ties).

    Screened in float64 with a 2x slack, then confirmed with 40-digit decimals.
    """
    fwd = exact_forward(net, x_uint8)
    flags = np.zeros(len(x_uint8), dtype=bool)
    for li, layer in enumerate(net.layers[:-1]):
        if layer.integer_thresholds:  # an integer dot product against a float32 threshold: decided exactly
            continue
        acc = fwd[f"layer{li}.I"].reshape(len(x_uint8), -1, layer.weights.shape[0])  # (N, P, M)
        g, b, m, v = (np.array([float(f) for f in layer.bn[k]]) for k in ("gamma", "beta", "mean", "var"))
        s = float(layer.in_quant.scale)
        y = (s * acc - m) * g / np.sqrt(v + float(layer.eps)) + b
        bound = FLOAT32_REL_BOUND * ((np.abs(s * acc) + np.abs(m)) * np.abs(g) / np.sqrt(v + float(layer.eps)) + np.abs(b))
        for c, _ in layer.out_quant.boundaries():
            cand = np.abs(y - float(c)) <= 2 * bound + 1e-12
            for img, p, n in zip(*np.nonzero(cand)):
                if flags[img]:
                    continue
                margin, _, fb = nearest_boundary(layer, int(n), int(acc[img, p, n]))
                flags[img] |= margin <= fb
    return flags
