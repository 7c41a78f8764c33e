"""Static range proof of a FINN dataflow model: every accumulator and output fits the type the hardware uses.

For every node of the final dataflow model, in graph order, the exact interval of every value it can
produce is derived from the interval of its input (the graph input's datatype for the first node:
every possible input, not a test set) and its parameters, then compared with the fixed-width types
the generated code computes in:

- ``MVAU`` (finn-hlslib ``Matrix_Vector_Activate_(Stream_)Batch``): the accumulator of an XNOR /
  bipolar layer is a popcount, exactly [0, K] (K = MW); of a bit-plane or ternary layer the signed
  dot product, per neuron j exactly [sum_i min(w_ij a, w_ij b), sum_i max(w_ij a, w_ij b)] for
  inputs in [a, b]. finn-hlslib accumulates in the type of its activation's ``init``: the threshold
  type ``TA`` of ``ThresholdsActivation`` (thresh.h) for a thresholded layer, the output type of
  ``PassThroughActivation`` otherwise; each SIMD step adds into that register (``ap_int`` wraps, so
  the final value is exact whenever the final interval fits). Every partial sum, in any order, lies
  in ``prefix_interval`` (the negative parts and the positive parts of the terms summed); where the
  input interval contains 0 that is the final interval itself. The output ``ActVal + #{t <= acc}`` (or the accumulator
  itself) must fit ``Slice<odt>``.
- ``Thresholding``: every input value must be representable in the threshold (comparison) type,
  the thresholds in their type, the output ``ActVal + #{t <= x}`` in the output type.
- ``LabelSelect``: its input type must hold the producer's interval; the index lies in [0, labels).
- Max pooling and pure data movement (sliding window, padding, width converters, FIFOs, reshape):
  the output interval is the input's (padding adds 0) and must fit the output type.

Thresholds are also checked against the reference's (``reference_thresholds``, recorded before
FINN's bit-width minimization): on the accumulator's interval every comparison must give the same
result, i.e. no threshold was clipped below what the reference needs. Types are read from the
node attributes and, where code generation ran, cross-checked against ``generated_code/<node>/``
(thresh.h, top_<node>.cpp, the RTL thresholding's parameters). Any node whose types cannot hold its
range makes :func:`check_range_proof` raise, naming the node, K, the interval and the type.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

HW_SUFFIXES = ("_hls", "_rtl")
# Nodes that only move, buffer, pad or regroup values (their output interval is their input's).
DATA_MOVEMENT = ("ConvolutionInputGenerator", "StreamingDataWidthConverter", "StreamingFIFO", "Reshape",
                 "FMPadding", "StreamingMaxPool", "DuplicateStreams", "Transpose", "IODMA")


class RangeProofError(AssertionError):
    """A node's types cannot hold every value it can take; the message names node, K, interval and type."""


def base_op(op_type: str) -> str:
    """MVAU_hls -> MVAU (FINN's specialized variants share their base op's semantics)."""
    for suffix in HW_SUFFIXES:
        if op_type.endswith(suffix):
            return op_type[: -len(suffix)]
    return op_type


def _dt_range(dt) -> tuple[int, int]:
    return int(dt.min()), int(dt.max())


def _fits(interval: tuple[int, int], dt) -> bool:
    lo, hi = interval
    return bool(dt.allowed(lo) and dt.allowed(hi)) and (dt.is_integer() or dt.name == "BIPOLAR")


def _hls(dt) -> str:
    """The HLS type FINN writes for a datatype (BIPOLAR travels as BINARY, ap_uint<1>)."""
    from qonnx.core.datatype import DataType

    return (DataType["BINARY"] if dt.name == "BIPOLAR" else dt).get_hls_datatype_str()


def is_popcount(inst) -> bool:
    """An XNOR layer: binaryXnorMode, or bipolar inputs times bipolar weights (hlslib's Recast<XnorMul>)."""
    if inst.get_nodeattr("binaryXnorMode"):
        return True
    return inst.get_nodeattr("inputDataType") == "BIPOLAR" and inst.get_nodeattr("weightDataType") == "BIPOLAR"


def mvau_accumulator_bounds(weights: np.ndarray, in_lo: int, in_hi: int, popcount: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-neuron accumulator interval of an MVAU: (lo, hi), each (MH,) int64.

    ``weights`` (MW, MH) as stored in the FINN node ({0, 1} in XNOR mode, integers otherwise);
    inputs range over [in_lo, in_hi]. A popcount counts equal bits, so every neuron reaches 0 and MW.
    """
    mw, mh = weights.shape
    if popcount:
        return np.zeros(mh, np.int64), np.full(mh, mw, np.int64)
    w = np.rint(weights).astype(np.int64)
    lo = np.minimum(w * in_lo, w * in_hi).sum(axis=0)
    hi = np.maximum(w * in_lo, w * in_hi).sum(axis=0)
    return lo, hi


def mvau_prefix_bounds(weights: np.ndarray, in_lo: int, in_hi: int, popcount: bool) -> tuple[int, int]:
    """The interval (lo, hi) holding every partial sum of every neuron's accumulation, in any order.

    Each term w_ij * x_i ranges over [min(w a, w b), max(w a, w b)]; a partial sum is at least the sum
    of the terms' negative minima and at most the sum of their positive maxima. Popcount terms are 0 / 1.
    """
    mw, _ = weights.shape
    if popcount:
        return 0, int(mw)
    w = np.rint(weights).astype(np.int64)
    lo = np.minimum(np.minimum(w * in_lo, w * in_hi), 0).sum(axis=0)
    hi = np.maximum(np.maximum(w * in_lo, w * in_hi), 0).sum(axis=0)
    return int(lo.min()), int(hi.max())


def threshold_count_bounds(thresholds: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int]:
    """Fewest and most thresholds t <= acc over all neurons, acc in [lo_j, hi_j] (count is monotone)."""
    thr = thresholds if thresholds.shape[0] == len(lo) else np.broadcast_to(thresholds, (len(lo), thresholds.shape[1]))
    return int((thr <= lo[:, None]).sum(axis=1).min()), int((thr <= hi[:, None]).sum(axis=1).max())


def equivalent_thresholds(final: np.ndarray, reference: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(MH,) bool: for every acc in [lo_j, hi_j], ``t <= acc`` gives the same result with both threshold rows.

    For integer acc, ``t <= acc`` only depends on ceil(t) clipped to [lo, hi + 1].
    """
    mh = len(lo)

    def norm(t):
        t = np.broadcast_to(t, (mh, t.shape[1])) if t.shape[0] != mh else t
        return np.clip(np.ceil(t.astype(np.float64)), lo[:, None], hi[:, None] + 1)

    if final.shape[1] != reference.shape[1]:
        return np.zeros(mh, bool)
    return np.all(norm(final) == norm(reference), axis=1)


# ---------------------------------------------------------------- generated code (cross-check)

_AP = r"(ap_u?int<\d+>)"


def read_generated_types(node_dir: Path) -> dict[str, object]:
    """The types a node's generated sources use (empty where there are none).

    Keys: ``threshold_type`` / ``threshold_out_type`` / ``act_val`` (thresh.h, HLS ThresholdsActivation),
    ``in_slice`` / ``out_slice`` (TSrcI / TDstI Slice<...> of the MVAU call), ``passthrough_type`` (PassThroughActivation<...>),
    ``labelselect_in`` / ``labelselect_out`` (LabelSelect_Batch), ``rtl`` (parameters of an RTL
    thresholding: WI, WT, N, SIGNED, BIAS, O_BITS), ``simd`` / ``pe`` / ``mw`` (the MVAU #defines).
    """
    node_dir = Path(node_dir)
    found: dict[str, object] = {}
    if not node_dir.is_dir():
        return found
    thresh = node_dir / "thresh.h"
    if thresh.is_file():
        head = thresh.read_text()[:2000]
        m = re.search(r"ThresholdsActivation<\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*" + _AP + r"\s*,\s*" + _AP
                      + r"\s*,\s*(-?\d+)", head)
        if m:
            found.update(threshold_type=m.group(4), threshold_out_type=m.group(5), act_val=int(m.group(6)))
    for top in node_dir.glob("top_*.cpp"):
        text = top.read_text()
        # template arguments MW1, MH1, SIMD1, PE1, [MMV,] TSrcI, TDstI, TWeightI
        m = re.search(r"Matrix_Vector_Activate(?:_Stream)?_Batch<\s*MW1\s*,\s*MH1\s*,\s*SIMD1\s*,\s*PE1\s*,\s*"
                      r"(?:\d+\s*,\s*)?(Recast<\w+>|Slice<" + _AP + r">|Identity)\s*,\s*Slice<" + _AP + r">", text)
        if m:
            found["out_slice"] = m.group(3)
            if m.group(2):
                found["in_slice"] = m.group(2)
        m = re.search(r"PassThroughActivation<" + _AP + r">", text)
        if m:
            found["passthrough_type"] = m.group(1)
        m = re.search(r"LabelSelect_Batch<\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*" + _AP + r"\s*,\s*" + _AP, text)
        if m:
            found.update(labelselect_in=m.group(1), labelselect_out=m.group(2))
        for key, define in (("mw", "MW1"), ("simd", "SIMD1"), ("pe", "PE1")):
            m = re.search(rf"#define\s+{define}\s+(\d+)", text)
            if m:
                found[key] = int(m.group(1))
    for verilog in node_dir.glob("Thresholding_rtl*.v"):
        params = dict(re.findall(r"parameter\s+(WI|WT|N|SIGNED|BIAS|O_BITS)\s*=\s*(-?\d+)", verilog.read_text()))
        if params:
            found["rtl"] = {k: int(v) for k, v in params.items()}
    return found


# ---------------------------------------------------------------- the proof


def _row(node, op, **fields) -> dict:
    row = {"node": node.name, "op_type": node.op_type, "kind": op}
    row.update(fields)
    return row


def _thresholded(thr: np.ndarray, tdt, odt, act_val: int, ref_thr, lo: np.ndarray, hi: np.ndarray, unit: str,
                 on_iv: tuple[int, int], problems: list[str]) -> tuple[dict, tuple[int, int]]:
    """The ``thresholds`` block of a row and the output interval ``ActVal + #{t <= acc}`` (2 count - 1 for
    BIPOLAR) for inputs in [lo_j, hi_j]; appends to ``problems`` where a threshold is not representable
    in ``tdt`` or gives another comparison than the reference's (``ref_thr``, None: not checked)."""
    cmin, cmax = threshold_count_bounds(thr, lo, hi)
    out_iv = (2 * cmin - 1, 2 * cmax - 1) if odt.name == "BIPOLAR" else (act_val + cmin, act_val + cmax)
    block = {"count": int(thr.shape[1]), "interval": [float(thr.min()), float(thr.max())], "type": tdt.name,
             "all_in_type": bool(np.vectorize(tdt.allowed)(thr).all())}
    if not block["all_in_type"]:
        problems.append(f"thresholds {block['interval']} not all representable in {tdt.name}")
    if ref_thr is not None:
        ref = np.asarray(ref_thr, np.float64)
        same = equivalent_thresholds(thr, ref, lo, hi)
        block["equivalent_to_reference"] = bool(same.all())
        if not same.all():
            bad = int(np.flatnonzero(~same)[0])
            problems.append(f"thresholds of {int((~same).sum())} {unit} (first: {bad}, reference "
                            f"{ref[bad if len(ref) > 1 else 0].tolist()}, used {thr[bad if len(thr) > 1 else 0].tolist()}) "
                            f"change the output on {list(on_iv)}")
    return block, out_iv


def _prove_mvau(model, node, inst, in_iv, ref_thr, gen) -> dict:
    from qonnx.core.datatype import DataType

    mw, mh = int(inst.get_nodeattr("MW")), int(inst.get_nodeattr("MH"))
    idt, wdt, odt = (DataType[inst.get_nodeattr(a)] for a in ("inputDataType", "weightDataType", "outputDataType"))
    popcount = is_popcount(inst)
    weights = model.get_initializer(node.input[1])
    if weights is None:
        raise RangeProofError(f"{node.name}: no weight initializer (external weights are not proven)")
    if popcount and idt.name == "BIPOLAR":  # stored as -1/+1 in python, counted as equal bits
        weights = (weights + 1) / 2
    lo, hi = mvau_accumulator_bounds(np.asarray(weights), in_iv[0], in_iv[1], popcount)
    acc_iv = (int(lo.min()), int(hi.max()))
    no_act = bool(inst.get_nodeattr("noActivation"))
    acc_attr = DataType[inst.get_nodeattr("accDataType")]
    problems = []
    row = _row(node, "MVAU", mode="popcount" if popcount else ("bit-plane" if wdt.bitwidth() == 1 else "ternary/int"),
               K=mw, MH=mh, SIMD=int(inst.get_nodeattr("SIMD")), PE=int(inst.get_nodeattr("PE")),
               input_type=idt.name, input_interval=list(in_iv), weight_type=wdt.name,
               accumulator_interval=list(acc_iv), accDataType=acc_attr.name)
    if not _fits(in_iv, idt):
        problems.append(f"input interval {list(in_iv)} does not fit inputDataType {idt.name}")
    if not _fits(acc_iv, acc_attr):
        problems.append(f"accumulator interval {list(acc_iv)} does not fit accDataType {acc_attr.name}")
    if no_act:
        acc_dt = odt  # PassThroughActivation<odt>: hlslib accumulates in the output type
        out_iv = acc_iv
        row.update(accumulator_type=acc_dt.name, thresholds=None)
        if gen.get("passthrough_type") and gen["passthrough_type"] != _hls(acc_dt):
            problems.append(f"generated PassThroughActivation<{gen['passthrough_type']}> differs from {_hls(acc_dt)}")
    else:
        thr = np.asarray(model.get_initializer(node.input[2]), dtype=np.float64)
        tdt = model.get_tensor_datatype(node.input[2])
        acc_dt = tdt  # ThresholdsActivation<..., TA = threshold type, ...>::init: the accumulator register
        block, out_iv = _thresholded(thr, tdt, odt, int(inst.get_nodeattr("ActVal")), ref_thr, lo, hi, "neurons",
                                     acc_iv, problems)
        row.update(accumulator_type=tdt.name, thresholds=block)
        if gen.get("threshold_type") and gen["threshold_type"] != _hls(tdt):
            problems.append(f"generated thresh.h accumulates in {gen['threshold_type']}, attributes say {_hls(tdt)}")
    row["accumulator_fits"] = _fits(acc_iv, acc_dt)
    if not row["accumulator_fits"]:
        problems.append(f"accumulator interval {list(acc_iv)} does not fit the accumulating type {acc_dt.name}")
    row.update(output_type=odt.name, output_interval=list(out_iv))
    if not _fits(out_iv, odt):
        problems.append(f"output interval {list(out_iv)} does not fit outputDataType {odt.name}")
    if gen.get("in_slice") and gen["in_slice"] != _hls(idt):
        problems.append(f"generated input Slice<{gen['in_slice']}> differs from inputDataType {_hls(idt)}")
    if gen.get("out_slice") and gen["out_slice"] != _hls(odt):
        problems.append(f"generated Slice<{gen['out_slice']}> differs from outputDataType {_hls(odt)}")
    for key, attr in (("mw", "K"), ("simd", "SIMD"), ("pe", "PE")):
        if key in gen and gen[key] != row[attr]:
            problems.append(f"generated {key.upper()}1 = {gen[key]} differs from {attr} = {row[attr]}")
    prefix_iv = mvau_prefix_bounds(np.asarray(weights), in_iv[0], in_iv[1], popcount)
    row["prefix_interval"] = list(prefix_iv)
    row["prefix_sums_within_interval"] = prefix_iv == acc_iv
    return row | {"problems": problems, "out": out_iv}


def _prove_thresholding(model, node, inst, in_iv, ref_thr, gen) -> dict:
    from qonnx.core.datatype import DataType

    idt, odt = DataType[inst.get_nodeattr("inputDataType")], DataType[inst.get_nodeattr("outputDataType")]
    thr = np.asarray(model.get_initializer(node.input[1]), dtype=np.float64)
    tdt = model.get_tensor_datatype(node.input[1])
    channels = int(inst.get_nodeattr("NumChannels"))
    lo, hi = np.full(channels, in_iv[0], np.int64), np.full(channels, in_iv[1], np.int64)
    problems = []
    block, out_iv = _thresholded(thr, tdt, odt, int(inst.get_nodeattr("ActVal")), ref_thr, lo, hi, "channels",
                                 in_iv, problems)
    row = _row(node, "Thresholding", mode="thresholds", K=None, channels=channels, PE=int(inst.get_nodeattr("PE")),
               input_type=idt.name, input_interval=list(in_iv), accumulator_interval=None,
               accumulator_type=tdt.name, thresholds=block, output_type=odt.name, output_interval=list(out_iv))
    if not _fits(in_iv, idt):
        problems.append(f"input interval {list(in_iv)} does not fit inputDataType {idt.name}")
    if not _fits(in_iv, tdt):  # the comparison converts the input to the threshold type
        problems.append(f"input interval {list(in_iv)} does not fit the comparison (threshold) type {tdt.name}")
    if not _fits(out_iv, odt):
        problems.append(f"output interval {list(out_iv)} does not fit outputDataType {odt.name}")
    rtl = gen.get("rtl")
    if rtl:
        want = {"WI": idt.bitwidth(), "WT": tdt.bitwidth(), "N": int(thr.shape[1]), "SIGNED": int(idt.signed())}
        for key, value in want.items():
            if key in rtl and rtl[key] != value:
                problems.append(f"generated RTL parameter {key} = {rtl[key]} differs from {value}")
    if gen.get("threshold_type") and gen["threshold_type"] != _hls(tdt):
        problems.append(f"generated thresh.h compares in {gen['threshold_type']}, attributes say {_hls(tdt)}")
    row["accumulator_fits"] = None
    return row | {"problems": problems, "out": out_iv}


def _prove_labelselect(node, inst, in_iv, gen) -> dict:
    from qonnx.core.datatype import DataType

    idt, odt = DataType[inst.get_nodeattr("inputDataType")], DataType[inst.get_nodeattr("outputDataType")]
    labels = int(inst.get_nodeattr("Labels"))
    out_iv = (0, labels - 1)
    problems = []
    if not _fits(in_iv, idt):
        problems.append(f"input interval {list(in_iv)} does not fit inputDataType {idt.name}")
    if not _fits(out_iv, odt):
        problems.append(f"class index {list(out_iv)} does not fit outputDataType {odt.name}")
    if gen.get("labelselect_in") and gen["labelselect_in"] != _hls(idt):
        problems.append(f"generated LabelSelect_Batch input type {gen['labelselect_in']} differs from {_hls(idt)}")
    if gen.get("labelselect_out") and gen["labelselect_out"] != _hls(odt):
        problems.append(f"generated LabelSelect_Batch output type {gen['labelselect_out']} differs from {_hls(odt)}")
    row = _row(node, "LabelSelect", mode="argmax", K=labels, input_type=idt.name, input_interval=list(in_iv),
               accumulator_interval=None, accumulator_type=None, accumulator_fits=None, thresholds=None,
               output_type=odt.name, output_interval=list(out_iv))
    return row | {"problems": problems, "out": out_iv}


def _prove_passthrough(node, op, inst, in_iv) -> dict:
    idt, odt = inst.get_input_datatype(0), inst.get_output_datatype(0)
    out_iv = (min(in_iv[0], 0), max(in_iv[1], 0)) if op == "FMPadding" else tuple(in_iv)
    problems = []
    if not _fits(tuple(in_iv), idt):
        problems.append(f"input interval {list(in_iv)} does not fit the input type {idt.name}")
    if not _fits(out_iv, odt):
        problems.append(f"output interval {list(out_iv)} does not fit the output type {odt.name}")
    row = _row(node, op, mode="max" if "MaxPool" in op else "data movement", K=None, input_type=idt.name,
               input_interval=list(in_iv), accumulator_interval=None, accumulator_type=None, accumulator_fits=None,
               thresholds=None, output_type=odt.name, output_interval=list(out_iv))
    return row | {"problems": problems, "out": out_iv}


def _prove_pool(node, inst, in_iv) -> dict:
    if inst.get_nodeattr("Function") != "MaxPool":
        row = _row(node, "Pool", mode=inst.get_nodeattr("Function"), output_interval=None)
        return row | {"problems": [f"no range rule for {inst.get_nodeattr('Function')} pooling"], "out": in_iv}
    row = _prove_passthrough(node, "Pool", inst, in_iv)  # a max of values in [a, b] lies in [a, b]
    row["mode"] = "max"
    return row


def range_proof(model, generated_code: str | Path | None = None,
                reference_thresholds: dict[int, list] | None = None) -> list[dict]:
    """Per-node proof rows of a dataflow model, in graph order (nothing raised; see ``fits``).

    ``generated_code``: the build's generated_code/ folder (cross-check of the types, where present).
    ``reference_thresholds``: {i: (MH, T) thresholds} of the i-th thresholded node (MVAU with thresholds
    or Thresholding, graph order) as the reference needs them (see hw_builds.accumulators).
    Each row: node, op_type, kind, mode, K, folding, input / accumulator / output interval and type,
    thresholds, ``generated_code_checked``, ``problems`` (list of one-line causes) and ``fits``.
    """
    from qonnx.custom_op.registry import getCustomOp

    intervals: dict[str, tuple[int, int]] = {}
    for tensor in model.graph.input:
        intervals[tensor.name] = _dt_range(model.get_tensor_datatype(tensor.name))
    rows, thresholded = [], 0
    for node in model.graph.node:
        op = base_op(node.op_type)
        src = node.input[0]
        in_iv = intervals.get(src) or _dt_range(model.get_tensor_datatype(src))
        gen_dir = Path(generated_code) / node.name if generated_code else None
        gen = read_generated_types(gen_dir) if gen_dir is not None else {}
        inst = getCustomOp(node) if node.domain.startswith("finn.custom_op") else None
        if op == "MVAU":
            has_thr = not inst.get_nodeattr("noActivation")
            ref = reference_thresholds.get(thresholded) if (reference_thresholds and has_thr) else None
            row = _prove_mvau(model, node, inst, in_iv, ref, gen)
            thresholded += has_thr
        elif op == "Thresholding":
            ref = reference_thresholds.get(thresholded) if reference_thresholds else None
            row = _prove_thresholding(model, node, inst, in_iv, ref, gen)
            thresholded += 1
        elif op == "LabelSelect":
            row = _prove_labelselect(node, inst, in_iv, gen)
        elif op == "Pool":
            row = _prove_pool(node, inst, in_iv)
        elif op in DATA_MOVEMENT and inst is not None:
            row = _prove_passthrough(node, op, inst, in_iv)
        else:
            row = _row(node, op, mode=None, output_interval=None)
            row |= {"problems": [f"no range rule for op type {node.op_type}: cannot prove it"], "out": in_iv}
        row["generated_code_checked"] = bool(gen)
        for out in node.output:
            intervals[out] = tuple(int(v) for v in row.pop("out"))
        row["fits"] = not row["problems"]
        rows.append(row)
    return rows


def check_range_proof(rows: list[dict], where: str = "") -> None:
    """Raise RangeProofError for the first node that does not fit (node, K, interval, type, cause)."""
    bad = [r for r in rows if not r["fits"]]
    if not bad:
        return
    r = bad[0]
    prefix = f"{where}: " if where else ""
    raise RangeProofError(
        f"{prefix}range proof failed at {r['node']} ({r['op_type']}, K={r.get('K')}, accumulator "
        f"{r.get('accumulator_interval')} in {r.get('accumulator_type')}, output {r.get('output_interval')} in "
        f"{r.get('output_type')}): {'; '.join(r['problems'])}"
        + (f" (and {len(bad) - 1} more nodes)" if len(bad) > 1 else "")
    )


def proof_summary(rows: list[dict]) -> dict:
    """The summary.json block: every node fits?, the per-node table."""
    return {"all_fit": all(r["fits"] for r in rows), "nodes": rows,
            "scope": "every input the graph input's datatype allows (static, interval arithmetic)"}
