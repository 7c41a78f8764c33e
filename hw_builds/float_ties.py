"""Float ties: where Brevitas' float32 forward may differ from the exact function, and proof that it only does there.

The XNOR reference, FINN's graphs and the hardware compute the exact function
(hw_builds/exact_function.py). Brevitas computes batch norm in float32, so a pre-activation y
within float32 rounding of a quantizer boundary c can land on the other side. Such an image is a
*float tie* when this is proven: at the first layer where Brevitas' trace differs from the exact
one, its inputs and accumulators are still equal, and every differing activation comes from a
neuron whose exact y lies within Brevitas' float32 error bound of the boundary between the two
codes (``exact_function.float_bound``; for a max-pooled layer, some neuron of the pooling window
does). After that layer the two computations legitimately part, so the image's later layers and
top-1 are not compared with Brevitas. Any other difference is an error, as before.
"""

from __future__ import annotations

import numpy as np

from hw_builds.exact_function import FLOAT32_REL_BOUND, META_PROP, ExactNetwork, nearest_boundary

FIRST_TIES_REPORTED = 5  # ties listed by image in verify.json


def _input_tie(net: ExactNetwork, pixel: int) -> tuple[float, float]:
    """(margin, bound) of the input quantizer at a pixel: x = p * a + b against its nearest boundary."""
    a, b = net.pixel_scale
    x = pixel * a + b
    margin = min(abs(x - c) for c, _ in net.input_quant.boundaries())
    return float(margin), FLOAT32_REL_BOUND * (abs(float(pixel * a)) + abs(float(b)))


def _exact_i(acc: int, k: int, xnor: bool, negated: bool) -> int:
    """Brevitas' dot product I from the reference's accumulator (popcount or signed) of FINN's weights."""
    i = 2 * acc - k if xnor else acc
    return -i if negated else i


def classify_brevitas(ref: dict[str, np.ndarray], brev: dict[str, np.ndarray], net: ExactNetwork,
                      xnor_layers, mirror: dict[str, tuple[int, np.ndarray]], x_uint8: np.ndarray) -> list[dict]:
    """Float ties among the images where Brevitas' trace differs from the reference's; a list of records.

    ``ref`` / ``brev``: traces of the same images (``layer{i}.in_bits`` codes, ``layer{i}.acc``), as
    xnor_verify builds them; ``xnor_layers``: the reference's XnorLayers; ``mirror``: FINN's negated
    neurons (xnor_verify.mirrored_neurons). An image is returned (image, layer, neuron, margin,
    float32 bound, and how many activations differ) only when the proof above holds; images not
    returned but differing stay errors for the caller.
    """
    names = [f"layer{i}.{part}" for i in range(len(xnor_layers)) for part in ("in_bits", "acc")]
    n = len(brev["logits"])
    pairs = {}
    for name in names:
        if name not in brev or name not in ref:
            continue
        a, b = ref[name][:n].reshape(n, -1).astype(np.int64), brev[name].reshape(n, -1).astype(np.int64)
        if name.endswith(".acc") and name in mirror:
            k, mask = mirror[name]
            b = np.where(np.tile(mask, b.shape[1] // len(mask)), k - b, b)
        pairs[name] = (a, b)
    differs = np.zeros(n, dtype=bool)
    for a, b in pairs.values():
        differs |= np.any(a != b, axis=1)
    ties = []
    for img in np.flatnonzero(differs):
        first = None
        for name, (a, b) in pairs.items():
            if not np.array_equal(a[img], b[img]):
                first = (name, np.flatnonzero(a[img] != b[img]))
                break
        if first is None or not first[0].endswith(".in_bits"):
            continue
        name, where = first
        a, b = pairs[name]
        if np.abs(a[img, where] - b[img, where]).max() > 1:  # not adjacent codes: no single boundary between
            continue
        li = int(name[5:name.index(".")])
        record = _prove(net, xnor_layers, mirror, ref, int(img), li, where, x_uint8)
        if record is not None:
            ties.append(record)
    return ties


def _prove(net, xnor_layers, mirror, ref, img: int, li: int, where: np.ndarray, x_uint8) -> dict | None:
    """The tie record of image ``img`` whose first difference is layer ``li``'s input at ``where``, or None."""
    if li == 0:
        pixels = x_uint8[img].reshape(-1) if not net.nchw_input else x_uint8[img].transpose(1, 2, 0).reshape(-1)
        worst = None
        for pos in where:
            margin, bound = _input_tie(net, int(pixels[pos]))
            if margin > bound:
                return None
            worst = max(worst or (0, 0, 0), (margin, bound, int(pos)))
        return {"image": img, "layer": "input", "neuron": worst[2], "margin": worst[0], "float32_bound": worst[1],
                "activations_differing": int(len(where))}
    prev = li - 1
    layer, xl = net.layers[prev], xnor_layers[prev]
    if layer.integer_thresholds:  # a FINN-ONNX threshold on the integer dot product: float32 decides exactly
        return None
    m = xl.out_features
    acc = ref[f"layer{prev}.acc"][img].reshape(-1, m).astype(np.int64)  # (P, M) pre-pool, NHWC order
    k, negated = mirror.get(f"layer{prev}.acc", (0, np.zeros(m, dtype=bool)))
    xnor = xl.act_bits == 1
    worst = None
    for pos in where:
        pix, neuron = divmod(int(pos), m)
        if xl.pool is None:
            candidates = [pix]
        else:  # the pooling window of output pixel pix in the pre-pool map
            oh, ow = xl.conv.out_dim
            ph, pw = window_dims(oh, ow, xl.pool)
            r, c = divmod(pix, pw)
            (kh, kw), (sh, sw) = xl.pool.kernel, xl.pool.stride
            candidates = [(r * sh + u) * ow + (c * sw + v) for u in range(kh) for v in range(kw)]
        best = None
        for p in candidates:
            i = _exact_i(int(acc[p, neuron]), xl.in_features, xnor, bool(negated[neuron]))
            margin, _, bound = nearest_boundary(layer, neuron, i)
            if margin <= bound and (best is None or margin < best[0]):
                best = (margin, bound)
        if best is None:
            return None
        worst = max(worst or (0, 0, 0), (best[0], best[1], neuron))
    return {"image": img, "layer": prev, "neuron": worst[2], "margin": worst[0], "float32_bound": worst[1],
            "activations_differing": int(len(where))}


def window_dims(oh: int, ow: int, pool) -> tuple[int, int]:
    """Output (H, W) of a max pool on an (oh, ow) map."""
    (kh, kw), (sh, sw) = pool.kernel, pool.stride
    return (oh - kh) // sh + 1, (ow - kw) // sw + 1


def tie_summary(ties: list[dict]) -> dict:
    """verify.json's ``float_ties``: count, the first few, and the largest margin against its bound."""
    return {
        "count": len(ties),
        "first": ties[:FIRST_TIES_REPORTED],
        "max_margin": max((t["margin"] for t in ties), default=None),
        "max_margin_over_bound": max((t["margin"] / t["float32_bound"] for t in ties if t["float32_bound"]),
                                     default=None),
    }


def exact_network_of(model) -> ExactNetwork | None:
    """The exact network recorded in a FINN model's metadata (step_record_exact_function), or None."""
    text = model.get_metadata_prop(META_PROP)
    return ExactNetwork.from_json(text) if text else None


def brevitas_float_ties(ref: dict[str, np.ndarray], brev: dict[str, np.ndarray], net: ExactNetwork | None,
                        xnor_layers, mirror, x_uint8: np.ndarray, offset: int, records: list[dict]) -> np.ndarray:
    """(N,) bool: the images of one chunk that are proven float ties; their records go to ``records``
    with image indices from ``offset``. Without a recorded exact network nothing is a tie."""
    tied = np.zeros(len(ref["logits"]), dtype=bool)
    if net is None:
        return tied
    for record in classify_brevitas(ref, brev, net, xnor_layers, mirror, x_uint8):
        tied[record["image"]] = True
        records.append({**record, "image": record["image"] + offset})
    return tied


def golden_float_ties(onnx_path, x_uint8: np.ndarray) -> np.ndarray:
    """(N,) bool: golden images whose exact path comes within Brevitas' float32 bound of a boundary.

    Raises UnsupportedModelError (naming the file, layer, neuron and cause) for a QONNX graph outside
    the exact definition.
    """
    from hw_builds.custom_steps import UnsupportedModelError
    from hw_builds.exact_function import ExactFunctionError, exact_network_from_file, near_boundary_images

    try:
        return near_boundary_images(exact_network_from_file(onnx_path), x_uint8)
    except ExactFunctionError as exc:
        raise UnsupportedModelError(f"{onnx_path}: exact function: {exc}") from exc
