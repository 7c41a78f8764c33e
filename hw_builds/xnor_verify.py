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
from host.xnor import XnorReference


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


def finn_trace(onnx_path: str | Path, x_uint8: np.ndarray, desc: str) -> dict[str, np.ndarray]:
    """Run a FINN model per sample in python mode; collect the reference's intermediates (see _layer_taps).

    Activations are FINN's values (code + out_bias / ActVal); verify_xnor subtracts the bias.
    Tensors are flattened per image; conv feature maps are NHWC in both FINN models, like the reference's.
    """
    from finn.core.onnx_exec import execute_onnx

    from hw_builds.execute import load_model, python_executable, unsanitized_execution

    model = python_executable(load_model(onnx_path))
    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    in_shape = tuple(model.get_tensor_shape(in_name))
    names = _layer_taps(model)
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in names}
    parts["logits"] = []
    # values exactly as FINN computes them (see unsanitized_execution); _exact_int refuses any non-integer
    with unsanitized_execution():
        for sample in tqdm(x_uint8, desc=desc, unit="img", mininterval=5.0):
            ctx = execute_onnx(model, {in_name: sample.astype(np.float32).reshape(in_shape)},
                               return_full_exec_context=True)
            for name, tensor in names:  # copies: a view would keep the sample's whole context alive
                parts[name].append(np.array(ctx[tensor], dtype=np.float32).reshape(-1))
            parts["logits"].append(np.array(ctx[out_name], dtype=np.float32).reshape(-1))
            del ctx
    out = {}
    for name, chunks in parts.items():
        arr = np.stack(chunks)
        out[name] = arr if name == "logits" else _exact_int(arr, f"{onnx_path}: {name}")
    return out


def _exact_int(arr: np.ndarray, where: str) -> np.ndarray:
    """Float tensor that must hold integers -> int32; refuse silently rounded values."""
    ints = np.rint(arr)
    if not np.array_equal(ints, arr):
        raise XnorVerificationError(f"{where}: non-integer values where integers were expected")
    return ints.astype(np.int32)


def compare_traces(ref: dict[str, np.ndarray], other: dict[str, np.ndarray],
                   fan_in: dict[str, int] | None = None) -> list[dict]:
    """Per intermediate that both paths have: images that differ (logits compared by top-1 only).

    ``fan_in`` (for Brevitas): accumulators named there may be mirrored per neuron (output channel,
    the last axis; for a conv on every pixel), acc' = K - acc (0 for the signed accumulators of
    multi-bit layers: acc' = -acc).
    FINN's streamlining moves the sign of a negative batch-norm scale into that neuron's weights
    (FactorOutMulSignMagnitude, Absorb1BitMulIntoMatMul), so its popcount is the mirror of the
    one computed with Brevitas' weights; a neuron must then be mirrored on every image.
    """
    rows = []
    for name in ref:
        if name not in other or name == "logits":
            continue
        n, m = len(ref[name]), ref[name].shape[-1]
        a = ref[name].astype(np.int64).reshape(n, -1, m)  # (N, pixels or 1, M)
        b = other[name].astype(np.int64).reshape(a.shape)
        row = {"intermediate": name}
        if fan_in and name in fan_in:
            mirrored = np.all(a == fan_in[name] - b, axis=(0, 1)) & ~np.all(a == b, axis=(0, 1))  # (M,)
            b = np.where(mirrored, fan_in[name] - b, b)
            row["neurons_mirrored"] = int(mirrored.sum())
        differ = np.any(a != b, axis=(1, 2))
        row.update(images_differing=int(differ.sum()), first_image=int(np.argmax(differ)) if differ.any() else None)
        rows.append(row)
    return rows


def verify_xnor(xnor_npz: str | Path, checkpoint: str | Path, streamlined_onnx: str | Path, hw_onnx: str | Path,
                data_npz: str | Path, out_json: str | Path, model_name: str,
                test_subset: int | None = None, finn_subset: int | None = None) -> dict:
    """Run the verification; write ``out_json`` if all agree, else print the report and raise.

    ``test_subset``: first N test images (None = all) for the XNOR reference and Brevitas;
    ``finn_subset``: first N of those also run through the two FINN models (None = all of them).
    """
    from models.checkpoint import load_checkpoint
    from models.datasets import load_npz
    from host.inputs import to_model_input

    ref = XnorReference.load(xnor_npz)
    data = load_npz(data_npz, test_subset=test_subset)
    x = to_model_input(data["x_test"], tuple(ref.model.input_shape))  # (N, C, H, W) uint8
    y = data["y_test"].astype(np.int64)
    n = len(x)
    n_finn = n if finn_subset is None else min(n, finn_subset)

    layers = ref.model.layers
    paths = {"xnor": ref.trace(x), "brevitas": brevitas_trace(load_checkpoint(checkpoint), x, layers=layers)}
    paths["finn_streamlined"] = finn_trace(streamlined_onnx, x[:n_finn], "FINN streamlined")
    paths["finn_hw"] = finn_trace(hw_onnx, x[:n_finn], "FINN HW model")
    for name in ("finn_streamlined", "finn_hw"):  # FINN's activation values -> the reference's codes
        for i, layer in enumerate(layers):
            key = f"layer{i}.in_bits"
            if key in paths[name] and layer.act_bias:
                paths[name][key] = paths[name][key] - layer.act_bias

    # the mirror of a neuron whose weights FINN negated: K - acc (popcount), -acc (signed dot product)
    fan_in = {f"layer{i}.acc": layer.in_features if layer.act_bits == 1 else 0 for i, layer in enumerate(layers)}
    top1 = {name: np.argmax(t["logits"], axis=1) for name, t in paths.items()}
    xl = np.sort(paths["xnor"]["logits"], axis=1)
    report: dict = {
        "model": model_name,
        "images": n,
        "images_finn": n_finn,
        "xnor_backend": ref.backend,
        "accuracy": {name: float(np.mean(p == y[: len(p)])) for name, p in top1.items()},
        "top1_agree_with_xnor": {},
        "intermediates": {},
        "xnor_ties": int(np.sum(xl[:, -1] == xl[:, -2])),
        "max_abs_logit_diff_vs_xnor": {},
    }
    first_diff = None
    for name in ("brevitas", "finn_streamlined", "finn_hw"):
        m = len(top1[name])
        agree = int(np.sum(top1[name] == top1["xnor"][:m]))
        report["top1_agree_with_xnor"][name] = {"agree": agree, "of": m}
        report["max_abs_logit_diff_vs_xnor"][name] = float(
            np.max(np.abs(paths[name]["logits"] - paths["xnor"]["logits"][:m]), initial=0.0))
        ref_part = {k: v[:m] for k, v in paths["xnor"].items()}
        rows = compare_traces(ref_part, paths[name], fan_in if name == "brevitas" else None)
        report["intermediates"][name] = rows
        bad = next((r for r in rows if r["images_differing"]), None)
        if first_diff is None and (bad is not None or agree != m):
            first_diff = {"path": name, "intermediate": bad["intermediate"] if bad else "logits (top-1)",
                          "images_differing": bad["images_differing"] if bad else m - agree}
    all_agree = np.all([top1[p] == top1["xnor"][:n_finn] for p in ("finn_streamlined", "finn_hw")], axis=0)
    all_agree &= top1["brevitas"][:n_finn] == top1["xnor"][:n_finn]
    report["top1_all_four_agree"] = {"agree": int(all_agree.sum()), "of": n_finn}
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
