"""verify_xnor: the same test images through four independent paths, compared exactly, layer by layer.

1. the XNOR-popcount reference (host/xnor.py, from ``xnor_model.npz``): integers, bit-packed;
2. Brevitas (the trained checkpoint), float32 PyTorch, with hooks on every quantized layer;
3. FINN's streamlined model run by qonnx/FINN ``execute_onnx``: its XnorPopcountMatMul nodes give the
   integer accumulators the reference must reproduce, its MultiThreshold nodes the activation bits;
4. FINN's HW model (after ``step_convert_to_hw``; Thresholding + MVAU nodes) in python execution.

Every path is turned into the same named intermediates (``layer{i}.in_bits`` 0/1, ``layer{i}.acc``
popcount, ``logits``; see ``XnorReference.trace``; conv feature maps NHWC): Brevitas' +1/-1
activations as bits, its Conv / Linear outputs (the +1/-1 dot product d) as (d + K) / 2; for bit-plane
layers (multi-bit input, +1/-1 or ternary {-1, 0, +1} weights) the codes value / scale - act_bias and
the accumulator d / scale. The stage passes only if top-1 agrees for
every image in all four paths and every integer intermediate is identical; otherwise the report
names the first differing intermediate in execution order, with the number of images affected.
The one exception is Brevitas at a proven float tie (hw_builds/float_ties.py): its float32 batch norm
put a pre-activation within float32 rounding of a boundary on the other side; such images are counted
in ``float_ties`` (count, first few, margins) and their later layers are not compared with Brevitas.

Ties: top-1 is the first maximal logit everywhere (np.argmax / torch.argmax). Images whose two best
XNOR logits are equal are counted as ``xnor_ties``; they still have to agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from host.atomic import write_json_atomic
from host.refusal import read_npz
from host.xnor import XnorReference
from hw_builds.float_ties import brevitas_float_ties, exact_network_of, tie_summary


class XnorVerificationError(AssertionError):
    """Two paths disagree; the message names the first differing layer."""


def _to_numpy(t) -> np.ndarray:
    value = getattr(t, "value", t)  # brevitas QuantTensor -> its tensor
    return value.detach().cpu().numpy()


def _nhwc_flat(v: np.ndarray) -> np.ndarray:
    """A conv tensor NCHW -> NHWC (the reference's layout), flattened per image; vectors unchanged."""
    if v.ndim == 4:
        v = v.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(v).reshape(len(v), -1)


def brevitas_trace(model, x_uint8: np.ndarray, batch_size: int = 500, layers=None) -> dict[str, np.ndarray]:
    """Brevitas forward on raw pixels with hooks: the reference's intermediates, from float tensors.

    Each quantized Conv / Linear gives ``layer{i}.in_bits`` from its input (after any max pool) and
    ``layer{i}.acc`` from its output, NHWC for convs. ``layers`` (the reference's layers) gives each
    layer's input code: 1-bit layers take +1/-1 as bits and (d + K) / 2 as accumulator; multi-bit
    layers take value / scale - act_bias as code and d / scale itself (``scale`` of the activation
    quantizer feeding the layer: 1 for the MLPs' 2-bit codes, 2**-7 for CNV's Q1.7 input). Without
    ``layers`` every layer is read as 1-bit (w1a1).
    """
    import torch
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

    acts = [m for m in model.modules() if isinstance(m, QuantIdentity)]
    quant_layers = [m for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear))]
    if len(acts) != len(quant_layers):
        raise XnorVerificationError(f"expected one activation quantizer per Conv/Linear, got {len(acts)} and "
                                    f"{len(quant_layers)}")
    parts: dict[str, list[np.ndarray]] = {}
    handles = []
    spec = [(1, 0)] * len(quant_layers) if layers is None else [(l.act_bits, l.act_bias) for l in layers]
    with torch.no_grad():
        scales = [float(act.act_quant.scale()) for act in acts]
        for i, layer in enumerate(quant_layers):  # integer weights: d / scale is the integer accumulator
            w_scale = layer.quant_weight().scale
            if not bool(torch.all(w_scale == 1)):
                raise XnorVerificationError(f"layer{i} ({type(layer).__name__}): weight scale "
                                            f"{w_scale.flatten()[:3].tolist()} is not 1; the XNOR reference "
                                            f"needs integer weights (+1/-1 or ternary)")

    def keep(name, fn, pre=False):
        def hook(_module, args, out=None):
            value = args[0] if pre else out
            parts.setdefault(name, []).append(fn(_nhwc_flat(_to_numpy(value))))
        return hook

    for i, layer in enumerate(quant_layers):
        (bits, bias), scale = spec[i], scales[i]
        k = layer.in_features if isinstance(layer, QuantLinear) else int(np.prod(layer.weight.shape[1:]))
        if bits == 1:
            code = lambda v: (v > 0).astype(np.uint8)  # noqa: E731
            acc = lambda v, k=k: np.rint((v + k) / 2).astype(np.int32)  # noqa: E731
        else:
            code = lambda v, s=scale, b=bias: (np.rint(v / s) - b).astype(np.int32)  # noqa: E731
            acc = lambda v, s=scale: np.rint(v / s).astype(np.int32)  # noqa: E731
        handles.append(layer.register_forward_pre_hook(keep(f"layer{i}.in_bits", code, pre=True)))
        handles.append(layer.register_forward_hook(keep(f"layer{i}.acc", acc)))
    logits = []
    try:
        with torch.no_grad():
            for lo in range(0, len(x_uint8), batch_size):
                xb = torch.from_numpy(x_uint8[lo : lo + batch_size].astype(np.float32))
                logits.append(_to_numpy(model(xb)).astype(np.float32))
    finally:
        for h in handles:
            h.remove()
    out = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    out["logits"] = np.concatenate(logits)
    return out


def _layer_taps(model) -> list[tuple[str, str]]:
    """(reference intermediate, tensor name) pairs of a FINN model, in execution order.

    A layer node is XnorPopcountMatMul / MatMul (streamlined) or MVAU (HW). Its ``in_bits`` is the
    tensor it reads, or, where an Im2Col / ConvolutionInputGenerator feeds it, that window
    generator's input (the NHWC feature map after any max pool). Its ``acc`` is its output, except
    for an MVAU with fused thresholds, whose output is activations only (no accumulator to compare).
    """
    from qonnx.custom_op.registry import getCustomOp

    producer = {out: node for node in model.graph.node for out in node.output}
    taps: list[tuple[str, str]] = []
    layer = 0
    for node in model.graph.node:
        op = node.op_type.removesuffix("_hls").removesuffix("_rtl")
        if op not in ("XnorPopcountMatMul", "MatMul", "MVAU"):  # MatMul: bipolar weights on multi-bit input
            continue
        src = node.input[0]
        feeder = producer.get(src)
        if feeder is not None and feeder.op_type.removesuffix("_hls").removesuffix("_rtl") in (
                "Im2Col", "ConvolutionInputGenerator"):
            src = feeder.input[0]
        taps.append((f"layer{layer}.in_bits", src))
        if op != "MVAU" or getCustomOp(node).get_nodeattr("noActivation"):
            taps.append((f"layer{layer}.acc", node.output[0]))
        layer += 1
    return taps


class FinnTracer:
    """A FINN model prepared once for python execution; :meth:`trace` collects the reference's intermediates.

    Activations are FINN's values (code + out_bias / ActVal); verify_xnor subtracts the bias.
    Tensors are flattened per image; conv feature maps are NHWC in both FINN models, like the reference's.
    """

    def __init__(self, onnx_path: str | Path):
        from hw_builds.execute import load_model, python_executable

        self.path = onnx_path
        self.model = python_executable(load_model(onnx_path))
        self.in_name, self.out_name = self.model.graph.input[0].name, self.model.graph.output[0].name
        self.in_shape = tuple(self.model.get_tensor_shape(self.in_name))
        self.taps = _layer_taps(self.model)

    def trace(self, x_uint8: np.ndarray, progress=None) -> dict[str, np.ndarray]:
        """Run the images one by one; ``progress`` (a tqdm bar) advances per image."""
        from finn.core.onnx_exec import execute_onnx

        from hw_builds.execute import unsanitized_execution

        parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in self.taps}
        parts["logits"] = []
        # values exactly as FINN computes them (see unsanitized_execution); _exact_int refuses any non-integer
        with unsanitized_execution():
            for sample in x_uint8:
                ctx = execute_onnx(self.model, {self.in_name: sample.astype(np.float32).reshape(self.in_shape)},
                                   return_full_exec_context=True)
                for name, tensor in self.taps:  # copies: a view would keep the sample's whole context alive
                    parts[name].append(np.array(ctx[tensor], dtype=np.float32).reshape(-1))
                parts["logits"].append(np.array(ctx[self.out_name], dtype=np.float32).reshape(-1))
                del ctx
                if progress is not None:
                    progress.update(1)
        out = {}
        for name, chunks in parts.items():
            arr = np.stack(chunks)
            out[name] = arr if name == "logits" else _exact_int(arr, f"{self.path}: {name}")
        return out


def _exact_int(arr: np.ndarray, where: str) -> np.ndarray:
    """Float tensor that must hold integers -> int32; refuse silently rounded values."""
    ints = np.rint(arr)
    if not np.array_equal(ints, arr):
        raise XnorVerificationError(f"{where}: non-integer values where integers were expected")
    return ints.astype(np.int32)


def brevitas_weights(model) -> list[np.ndarray]:
    """Each quantized Conv / Linear's integer weights, int64 (M, K), conv rows in the reference's (kh, kw, c) order."""
    import torch
    from brevitas.nn import QuantConv2d, QuantLinear

    out = []
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear))):
            w = _to_numpy(layer.quant_weight())
            if w.ndim == 4:
                w = w.transpose(0, 2, 3, 1)  # (M, C, KH, KW) -> (M, KH, KW, C)
            out.append(np.rint(w.reshape(len(w), -1)).astype(np.int64))
    return out


def mirrored_neurons(layers, weights: list[np.ndarray]) -> dict[str, tuple[int, np.ndarray]]:
    """``layer{i}.acc`` -> (K or 0, (M,) bool): the neurons whose weights FINN negated against Brevitas'.

    FINN's streamlining moves the sign of a negative batch-norm scale into that neuron's weights
    (FactorOutMulSignMagnitude, Absorb1BitMulIntoMatMul), so its accumulator is the mirror of the one
    computed with Brevitas' weights: K - acc for a popcount, -acc for a signed dot product (K = 0).
    Decided from the weights, not the data, so it holds for every chunk of images alike.
    """
    if len(weights) != len(layers):
        raise XnorVerificationError(f"Brevitas has {len(weights)} quantized layers, the XNOR model {len(layers)}")
    out = {}
    for i, (layer, bw) in enumerate(zip(layers, weights)):
        xw = layer.weights_int().astype(np.int64)
        mask = np.all(xw == -bw, axis=1) & np.any(xw != 0, axis=1) if xw.shape == bw.shape else np.zeros(
            len(xw), dtype=bool)
        out[f"layer{i}.acc"] = (layer.in_features if layer.act_bits == 1 else 0, mask)
    return out


def compare_traces(ref: dict[str, np.ndarray], other: dict[str, np.ndarray],
                   mirror: dict[str, tuple[int, np.ndarray]] | None = None) -> list[dict]:
    """Per intermediate that both paths have: images that differ (logits compared by top-1 only).

    ``mirror`` (for Brevitas, see :func:`mirrored_neurons`): accumulators named there are mirrored,
    acc' = K - acc, on the marked neurons (output channels, the last axis; for a conv on every pixel).
    """
    rows = []
    for name in ref:
        if name not in other or name == "logits":
            continue
        n, m = len(ref[name]), ref[name].shape[-1]
        a = ref[name].astype(np.int64).reshape(n, -1, m)  # (N, pixels or 1, M)
        b = other[name].astype(np.int64).reshape(a.shape)
        row = {"intermediate": name}
        if mirror and name in mirror:
            k, mask = mirror[name]
            b = np.where(mask, k - b, b)
            row["neurons_mirrored"] = int(mask.sum())
        differ = np.any(a != b, axis=(1, 2))
        row.update(images_differing=int(differ.sum()), first_image=int(np.argmax(differ)) if differ.any() else None)
        rows.append(row)
    return rows


def typed_tracer(onnx_path, parent_path, xnor_model):
    """The type-faithful path (hw_builds/typed_exec.TypedTracer) with the reference's output affine."""
    from hw_builds.typed_exec import TypedTracer

    return TypedTracer(onnx_path, parent_path, xnor_model.output_mul, xnor_model.output_add)


def _merge_rows(total: dict[str, dict], rows: list[dict], offset: int) -> None:
    """Add one chunk's compare_traces rows (image indices from ``offset``) into the running totals."""
    for row in rows:
        acc = total.setdefault(row["intermediate"], {**row, "images_differing": 0, "first_image": None})
        acc["images_differing"] += row["images_differing"]
        if acc["first_image"] is None and row["first_image"] is not None:
            acc["first_image"] = row["first_image"] + offset


# Test images per verification chunk: every path's intermediates of a chunk are held at once (CNV's
# first-layer accumulators alone are 230 KB per image and path), so the full test set is streamed.
CHUNK_IMAGES = 250
PATHS = ("brevitas", "finn_streamlined", "finn_hw")  # "larq" in place of "brevitas" for a Larq model


def load_framework_logits(path: str | Path, labels: np.ndarray) -> np.ndarray:
    """A Larq model's test-set logits (larq_models.export's test_logits.npz), float32 (N, classes).

    Its ``y_true`` must be the verified images' labels, else the export ran on another data set or subset.
    """
    path = Path(path)
    npz = read_npz(path, "test_logits.npz", ("logits", "y_true"))  # host.refusal: InputFileError names the file
    logits, y_true = npz["logits"].astype(np.float32), npz["y_true"]
    if not np.array_equal(y_true, labels):
        raise XnorVerificationError(f"{path}: its {len(y_true)} labels are not the {len(labels)} verified test labels")
    return logits


def framework_of(reference: str | Path) -> str:
    """The reference path's name: "brevitas" for a checkpoint (.pt), else the test_logits.npz's ``framework``
    ("import": qonnx's execution of an imported graph) or "larq" where the file names none (larq_models.export)."""
    if Path(reference).suffix != ".npz":
        return "brevitas"
    try:
        with np.load(reference, allow_pickle=False) as npz:
            return str(npz["framework"]) if "framework" in npz.files else "larq"
    except (OSError, ValueError) as err:
        raise XnorVerificationError(f"{reference}: not a readable test_logits.npz ({err})") from err


def verify_xnor(xnor_npz: str | Path, checkpoint: str | Path, streamlined_onnx: str | Path, hw_onnx: str | Path,
                data_npz: str | Path, out_json: str | Path, model_name: str,
                test_subset: int | None = None, finn_subset: int | None = None,
                typed_onnx: str | Path | None = None, typed_parent: str | Path | None = None) -> dict:
    """Run the verification; write ``out_json`` if all agree, else print the report and raise.

    ``checkpoint``: the Brevitas checkpoint (.pt; its intermediates are compared layer by layer), or a Larq
    model's ``test_logits.npz`` (its top-1 is compared; Larq == qonnx was proven on the same images by
    hw_builds.larq_proof, and the layers of the converted graph are compared through FINN's two models).
    ``test_subset``: first N test images (None = all) for the XNOR reference and Brevitas;
    ``finn_subset``: first N of those also run through the two FINN models (None = all of them).
    Images go through in chunks of CHUNK_IMAGES; counts and first differing images are over all of them.
    ``typed_onnx`` (a board build's final dataflow model; ``typed_parent`` its dataflow parent where the
    partition does not span the network) adds the path ``finn_hw_typed``: that model executed in its
    generated types (hw_builds/typed_exec.py), on every image.
    """
    from models.checkpoint import load_checkpoint
    from models.datasets import load_npz, model_images

    ref = XnorReference.load(xnor_npz)
    data = load_npz(data_npz, test_subset=test_subset)
    x = model_images(data["x_test"], tuple(ref.model.input_shape), data_npz)  # (N, C, H, W) uint8
    y = data["y_test"].astype(np.int64)
    n = len(x)
    n_finn = n if finn_subset is None else min(n, finn_subset)
    layers = ref.model.layers
    framework = framework_of(checkpoint)
    paths = (framework, "finn_streamlined", "finn_hw")
    if framework != "brevitas":  # Larq's logits on the test set (larq_models.export), or qonnx's on an imported
        # graph (hw_builds.model_import): compared by top-1
        larq_logits = load_framework_logits(checkpoint, y)
        mirror = None
    else:
        brevitas = load_checkpoint(checkpoint)
        mirror = mirrored_neurons(layers, brevitas_weights(brevitas))
    tracers = {"finn_streamlined": FinnTracer(streamlined_onnx), "finn_hw": FinnTracer(hw_onnx)}
    typed = None if typed_onnx is None else typed_tracer(typed_onnx, typed_parent, ref.model)
    paths = paths + (("finn_hw_typed",) if typed is not None else ())

    net = exact_network_of(tracers["finn_streamlined"].model)
    ties: list[dict] = []
    tie_mask: list[np.ndarray] = []  # per chunk: Brevitas' images that are float ties
    totals: dict[str, dict[str, dict]] = {name: {} for name in paths}
    logits: dict[str, list[np.ndarray]] = {name: [] for name in ("xnor", *paths)}
    with tqdm(total=n + 2 * n_finn, desc=f"verify_xnor {model_name}", unit="img", mininterval=5.0) as bar:
        for lo in range(0, n, CHUNK_IMAGES):
            xb = x[lo : lo + CHUNK_IMAGES]
            ref_trace = ref.trace(xb)
            traces = {"brevitas": brevitas_trace(brevitas, xb, layers=layers)} if framework == "brevitas" else {
                framework: {"logits": larq_logits[lo: lo + CHUNK_IMAGES]}}
            bar.update(len(xb))
            m = max(0, min(len(xb), n_finn - lo))
            runs = [(name, tracer, xb[:m]) for name, tracer in tracers.items() if m]
            runs += [("finn_hw_typed", typed, xb)] if typed is not None else []
            for name, tracer, images in runs:
                traces[name] = trace = tracer.trace(images, progress=bar if name != "finn_hw_typed" else None)
                trace.pop("label_select", None)
                for i, layer in enumerate(layers):  # FINN's activation values -> the reference's codes
                    if f"layer{i}.in_bits" in trace and layer.act_bias:
                        trace[f"layer{i}.in_bits"] = trace[f"layer{i}.in_bits"] - layer.act_bias
            logits["xnor"].append(ref_trace["logits"])
            tied = brevitas_float_ties(ref_trace, traces["brevitas"], net, layers, mirror, xb, lo, ties) \
                if framework == "brevitas" else np.zeros(len(xb), dtype=bool)  # Larq: proven equal to qonnx
            tie_mask.append(tied)
            for name, trace in traces.items():
                k = len(trace["logits"])
                ref_part, other = {key: v[:k] for key, v in ref_trace.items()}, trace
                if name == "brevitas":  # a float tie's later layers legitimately differ: not compared
                    ref_part = {key: v[~tied] for key, v in ref_part.items()}
                    other = {key: v[~tied] for key, v in trace.items()}
                rows = compare_traces(ref_part, other, mirror if name == "brevitas" else None)
                if name == "brevitas":  # first_image back to the chunk's numbering
                    kept = np.flatnonzero(~tied)
                    rows = [{**r, "first_image": None if r["first_image"] is None else int(kept[r["first_image"]])}
                            for r in rows]
                _merge_rows(totals[name], rows, lo)
                logits[name].append(trace["logits"])
            del ref_trace, traces

    classes = layers[-1].out_features
    scores = {name: np.concatenate(parts) if parts else np.zeros((0, classes), np.float32)
              for name, parts in logits.items()}
    top1 = {name: np.argmax(s, axis=1) for name, s in scores.items()}
    xl = np.sort(scores["xnor"], axis=1)
    report: dict = {
        "model": model_name,
        "framework": framework,
        "images": n,
        "images_finn": n_finn,
        "xnor_backend": ref.backend,
        "accuracy": {name: float(np.mean(p == y[: len(p)])) for name, p in top1.items()},
        "top1_agree_with_xnor": {},
        "intermediates": {name: list(rows.values()) for name, rows in totals.items()},
        "xnor_ties": int(np.sum(xl[:, -1] == xl[:, -2])),
        "max_abs_logit_diff_vs_xnor": {},
    }
    tied = np.concatenate(tie_mask) if tie_mask else np.zeros(0, dtype=bool)
    report["float_ties"] = tie_summary(ties)
    first_diff = None
    for name in paths:
        m = len(top1[name])
        same = top1[name] == top1["xnor"][:m]
        agree = int(np.sum(same | tied[:m])) if name == "brevitas" else int(np.sum(same))
        report["top1_agree_with_xnor"][name] = {"agree": agree, "of": m}
        report["max_abs_logit_diff_vs_xnor"][name] = float(
            np.max(np.abs(scores[name] - scores["xnor"][:m]), initial=0.0))
        bad = next((r for r in report["intermediates"][name] if r["images_differing"]), None)
        if first_diff is None and (bad is not None or agree != m):
            first_diff = {"path": name, "intermediate": bad["intermediate"] if bad else "logits (top-1)",
                          "images_differing": bad["images_differing"] if bad else m - agree}
    all_agree = np.all([top1[p] == top1["xnor"][:n_finn] for p in ("finn_streamlined", "finn_hw")], axis=0)
    all_agree &= top1[framework][:n_finn] == top1["xnor"][:n_finn]
    report["top1_all_four_agree"] = {"agree": int(all_agree.sum()), "of": n_finn}
    if typed is not None:
        report["type_faithful"] = {"model": str(typed_onnx), **report["top1_agree_with_xnor"]["finn_hw_typed"],
                                   "values_overflowing_type": typed.wraps}
    report["first_difference"] = first_diff
    report["passed"] = first_diff is None
    if first_diff is not None:  # no output file on failure: the report goes to the log instead
        print(json.dumps(report, indent=2), file=sys.stderr)
        raise XnorVerificationError(
            f"{model_name}: {first_diff['path']} differs from the XNOR reference first at "
            f"{first_diff['intermediate']} on {first_diff['images_differing']} images"
        )
    write_json_atomic(out_json, report)
    return report
