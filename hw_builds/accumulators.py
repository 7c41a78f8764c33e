"""Accumulator and threshold types of XNOR layers that hold every value they can take (a mend of FINN's).

finn-plus 1.6.1's ``MVAU.minimize_accumulator_width`` sizes an XNOR MVAU's accumulator as if it
summed bipolar weights times {0, 1} inputs (range [-#negative weights, #positive weights] of the
neuron), while finn-hlslib's ``Recast<XnorMul>`` counts equal bits: a popcount in [0, K], K = MW.
For the trained TFC-w1a1 that gives INT10 (-512..511) for K = 784 and INT7 (-64..63) for K = 64;
``RoundAndClipThresholds`` then clips the thresholds to that type (a threshold of 785, "never
fires", becomes 512), and the generated code accumulates in the threshold type, so popcounts above
its maximum wrap. FINN's python execution computes with unbounded integers and sees none of it.

Two build steps mend it without touching FINN:

- :func:`step_record_reference_thresholds` (before FINN's first bit-width minimization) keeps every
  thresholded node's thresholds as the reference needs them, in the model's metadata;
- :func:`step_mend_xnor_accumulators` (after each FINN minimization) gives every XNOR MVAU the
  unsigned types a popcount needs: thresholds restored from the record (clipped to [0, K + 1], which
  changes no output), threshold / accumulator type UINTn with 2^n > max(K, largest threshold), and for
  a layer without activation an output type UINTn holding K (a multiple of 8 bits at the graph's end,
  as FINN does). FINN's minimization is kept where it is correct: bit-plane and ternary layers, whose
  signed dot-product range FINN derives from the actual weights, are left as FINN sized them.
"""

from __future__ import annotations

import json
import math

import numpy as np

REFERENCE_THRESHOLDS_PROP = "bnnflow_reference_thresholds"  # model metadata: {i: (MH, T) thresholds}
TYPE_MENDS_PROP = "bnnflow_type_mends"  # model metadata: what step_mend_xnor_accumulators changed


def thresholded_nodes(model) -> list:
    """The nodes that compare against thresholds, in graph order: MVAUs with activation, Thresholding."""
    from qonnx.custom_op.registry import getCustomOp

    from hw_builds.range_proof import base_op

    out = []
    for node in model.graph.node:
        op = base_op(node.op_type)
        if op == "MVAU" and len(node.input) > 2 and not getCustomOp(node).get_nodeattr("noActivation"):
            out.append(node)
        elif op in ("Thresholding", "MultiThreshold") and len(node.input) > 1:
            out.append(node)
    return out


def _threshold_input(node) -> str:
    return node.input[2] if node.op_type.startswith("MVAU") else node.input[1]


def step_record_reference_thresholds(model, cfg):
    """Record every thresholded node's thresholds (graph order) before FINN's bit-width minimization.

    FINN's RoundAndClipThresholds clips thresholds to the accumulator type it chose; where that type
    is too narrow (XNOR layers) the information is gone afterwards. The record, in the model's
    metadata (``bnnflow_reference_thresholds``), lets step_mend_xnor_accumulators restore them and
    the range proof check that no threshold was clipped below what the reference needs.
    """
    record = {i: np.asarray(model.get_initializer(_threshold_input(n)), dtype=np.float64).tolist()
              for i, n in enumerate(thresholded_nodes(model))}
    model.set_metadata_prop(REFERENCE_THRESHOLDS_PROP, json.dumps(record))
    return model


def reference_thresholds(model) -> dict[int, np.ndarray] | None:
    """The record of step_record_reference_thresholds: {i: (MH, T) float64}, or None where there is none."""
    raw = model.get_metadata_prop(REFERENCE_THRESHOLDS_PROP)
    if not raw:
        return None
    return {int(i): np.asarray(v, dtype=np.float64) for i, v in json.loads(raw).items()}


def uint_for(value: int, multiple_of: int = 1) -> str:
    """The smallest UINTn (n a multiple of ``multiple_of``) holding 0..value."""
    bits = max(1, math.ceil(math.log2(int(value) + 1)))
    bits = -(-bits // multiple_of) * multiple_of
    return f"UINT{bits}"


def step_mend_xnor_accumulators(model, cfg):
    """Give every XNOR MVAU the unsigned accumulator, threshold and output types its popcount needs.

    For K = MW: thresholds = ceil(recorded) clipped to [0, K + 1] (FINN's clipped ones are replaced);
    threshold / accumulator type UINTn with 2^n - 1 >= max(K, thresholds); without activation, the
    output (= accumulator) type UINTn >= K, rounded to a multiple of 8 bits where the MVAU ends the
    graph. Changes are listed in the metadata ``bnnflow_type_mends``. Raises RuntimeError when the
    record of step_record_reference_thresholds is missing or does not match the graph.
    """
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.infer_datatypes import InferDataTypes

    from hw_builds.range_proof import base_op, is_popcount

    record = reference_thresholds(model)
    nodes = thresholded_nodes(model)
    if record is None or len(record) != len(nodes):
        raise RuntimeError(f"no matching threshold record ({REFERENCE_THRESHOLDS_PROP}): "
                           "step_record_reference_thresholds must run before FINN's bit-width minimization")
    index = {n.name: i for i, n in enumerate(nodes)}
    mends = json.loads(model.get_metadata_prop(TYPE_MENDS_PROP) or "[]")
    for node in model.graph.node:
        if base_op(node.op_type) != "MVAU":
            continue
        inst = getCustomOp(node)
        if not is_popcount(inst):
            continue
        k = int(inst.get_nodeattr("MW"))
        before = {"accDataType": inst.get_nodeattr("accDataType"), "outputDataType": inst.get_nodeattr("outputDataType")}
        if inst.get_nodeattr("noActivation"):
            last = not model.find_direct_successors(node)
            odt = uint_for(k, 8 if last else 1)
            inst.set_nodeattr("accDataType", odt)
            inst.set_nodeattr("outputDataType", odt)
            model.set_tensor_datatype(node.output[0], DataType[odt])
            after = {"accDataType": odt, "outputDataType": odt}
        else:
            ref = record[index[node.name]]
            used = model.get_initializer(node.input[2])
            if ref.shape != used.shape:
                raise RuntimeError(f"{node.name}: recorded thresholds {ref.shape} do not match {used.shape}")
            thr = np.clip(np.ceil(ref), 0, k + 1)
            tdt = uint_for(max(k, int(thr.max())))
            before["threshold_type"] = model.get_tensor_datatype(node.input[2]).name
            before["threshold_max"] = float(used.max())
            model.set_initializer(node.input[2], thr.astype(np.float32))
            model.set_tensor_datatype(node.input[2], DataType[tdt])
            inst.set_nodeattr("accDataType", uint_for(k))
            after = {"accDataType": uint_for(k), "threshold_type": tdt, "threshold_max": float(thr.max())}
        if any(before.get(key) != value for key, value in after.items()):
            mends = [m for m in mends if m["node"] != node.name]
            mends.append({"node": node.name, "K": k, "finn": before, "bnnflow": after})
    model.set_metadata_prop(TYPE_MENDS_PROP, json.dumps(mends))
    return model.transform(InferDataTypes())
