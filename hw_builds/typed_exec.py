"""Type-faithful execution of a FINN dataflow model: each HW node computes in its generated fixed-width types.

FINN's python execution computes with unbounded integers; the accelerator does not. Here every
compute node does what its finn-hlslib / RTL template does with the types of the node's attributes
(the same types the generated code uses; hw_builds/range_proof.py cross-checks them):

- ``MVAU``: the exact dot product (XNOR popcount, bit-plane or ternary), reduced modulo 2^n into the
  accumulating type (``ap_int<n>`` / ``ap_uint<n>`` wrap, AP_WRAP: every ``+=`` is modular, so the
  final register value is the exact sum wrapped once): the threshold type for a thresholded layer
  (``ThresholdsActivation::init``), the output type otherwise (``PassThroughActivation``); then
  ``ActVal + #{t <= acc}`` compared in the threshold type, sliced to the output type (``Slice<odt>``).
- ``Thresholding``: the input converted to the threshold type (wrapped), compared, output sliced.
- ``LabelSelect``: the input read in its input type, the first (lowest-index) maximum as in
  ``LabelSelect_Batch`` and ONNX TopK.
- Reshape, width converters and FIFOs pass values through; other nodes (sliding windows, max pooling,
  padding) run FINN's own python ``execute_node`` image by image, their outputs sliced to the output type.

With types that hold every value (the range proof) this equals FINN's python execution exactly;
with too narrow types it differs wherever a value overflows, which the wrap counters record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hw_builds.range_proof import base_op, is_popcount

PASS_VALUES = ("Reshape", "StreamingDataWidthConverter", "StreamingFIFO")


class TypedExecutionError(RuntimeError):
    """The model holds a node the type-faithful executor cannot run (message names it)."""


def wrap(values: np.ndarray, dt) -> np.ndarray:
    """int64 values as the fixed-width type ``dt`` holds them (two's complement wrap for signed types).

    BIPOLAR values (-1/+1) are returned unchanged (FINN's value convention for a 1-bit count).
    """
    if dt.name == "BIPOLAR":
        return values
    if not dt.is_integer():
        raise TypedExecutionError(f"type {dt.name} is not an integer type")
    n = dt.bitwidth()
    v = np.asarray(values, dtype=np.int64) & ((1 << n) - 1)
    if dt.signed():
        v = np.where(v >= (1 << (n - 1)), v - (1 << n), v)
    return v


def _count_ge(acc: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """#{t <= acc} per element; acc (R, C) int64, thresholds (C or 1, T)."""
    thr = np.broadcast_to(thr, (acc.shape[-1], thr.shape[-1]))
    return (thr[None, :, :] <= acc[:, :, None]).sum(axis=2)


def _activate(count: np.ndarray, odt, act_val: int) -> np.ndarray:
    if odt.name == "BIPOLAR":
        return 2 * count - 1
    return wrap(count + act_val, odt)


class TypedExecutor:
    """A dataflow model prepared for type-faithful execution; :meth:`run` takes a batch of images."""

    def __init__(self, model, path: str | Path = ""):
        from qonnx.core.datatype import DataType  # noqa: F401 - registers FINN's types early
        from qonnx.custom_op.registry import getCustomOp

        from hw_builds.execute import python_executable

        self.path = str(path)
        self.model = python_executable(model)
        self.nodes = []
        for node in self.model.graph.node:
            op = base_op(node.op_type)
            if not node.domain.startswith("finn.custom_op.fpgadataflow"):
                raise TypedExecutionError(f"{self.path}: {node.name} ({node.op_type}) is not a FINN HW layer")
            inst = getCustomOp(node)
            self.nodes.append((node, op, inst))
        self.in_name = self.model.graph.input[0].name
        self.out_name = self.model.graph.output[0].name
        self.wraps: dict[str, int] = {}

    def _mvau(self, node, inst, x: np.ndarray) -> np.ndarray:
        from qonnx.core.datatype import DataType

        mw = int(inst.get_nodeattr("MW"))
        w = np.asarray(self.model.get_initializer(node.input[1]), dtype=np.float64)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, mw).astype(np.float64)
        if is_popcount(inst):
            if inst.get_nodeattr("inputDataType") == "BIPOLAR":
                x2 = (x2 + 1) / 2
            if inst.get_nodeattr("weightDataType") == "BIPOLAR":
                w = (w + 1) / 2
            exact = (2 * x2 - 1) @ (2 * w - 1)  # +-1 dot product d; popcount = (d + K) / 2
            exact = np.rint((exact + mw) / 2).astype(np.int64)
        else:
            exact = np.rint(x2 @ w).astype(np.int64)  # |values| < 2^53: float64 is exact
        odt = DataType[inst.get_nodeattr("outputDataType")]
        if inst.get_nodeattr("noActivation"):
            out = wrap(exact, odt)
            acc = out
        else:
            tdt = self.model.get_tensor_datatype(node.input[2])
            acc = wrap(exact, tdt)
            thr = np.asarray(self.model.get_initializer(node.input[2]), dtype=np.float64)
            out = _activate(_count_ge(acc, thr), odt, int(inst.get_nodeattr("ActVal")))
        self._note(node, exact, acc)
        return out.reshape(*lead, -1)

    def _thresholding(self, node, inst, x: np.ndarray) -> np.ndarray:
        from qonnx.core.datatype import DataType

        tdt = self.model.get_tensor_datatype(node.input[1])
        odt = DataType[inst.get_nodeattr("outputDataType")]
        thr = np.asarray(self.model.get_initializer(node.input[1]), dtype=np.float64)
        exact = np.rint(x).astype(np.int64)
        shape = exact.shape
        flat = exact.reshape(-1, shape[-1])  # channels last (FINN HW layers are NHWC)
        acc = wrap(flat, tdt)
        self._note(node, flat, acc)
        return _activate(_count_ge(acc, thr), odt, int(inst.get_nodeattr("ActVal"))).reshape(shape)

    def _labelselect(self, node, inst, x: np.ndarray) -> np.ndarray:
        from qonnx.core.datatype import DataType

        idt = DataType[inst.get_nodeattr("inputDataType")]
        k = int(inst.get_nodeattr("K"))
        exact = np.rint(x).astype(np.int64).reshape(len(x), -1)
        v = wrap(exact, idt)
        self._note(node, exact, v)
        return np.argsort(-v, axis=1, kind="stable")[:, :k]  # first maximum wins, as TopK / LabelSelect_Batch

    def _note(self, node, exact: np.ndarray, held: np.ndarray) -> None:
        """Count the images (rows of the batch) where a value did not fit its type."""
        n = self._batch
        bad = np.any((exact != held).reshape(n, -1), axis=1)
        self.wraps[node.name] = self.wraps.get(node.name, 0) + int(bad.sum())

    def _finn_node(self, node, inst, x: np.ndarray) -> np.ndarray:
        """FINN's python execute_node, image by image (sliding windows, pooling, padding)."""
        outs = []
        in_shape = tuple(self.model.get_tensor_shape(node.input[0]))
        out_shape = tuple(self.model.get_tensor_shape(node.output[0]))
        for sample in x:
            ctx = {node.input[0]: sample.reshape(in_shape).astype(np.float32),
                   node.output[0]: np.zeros(out_shape, np.float32)}
            for extra in node.input[1:]:
                ctx[extra] = self.model.get_initializer(extra)
            inst.execute_node(ctx, self.model.graph)
            outs.append(np.asarray(ctx[node.output[0]]).reshape(out_shape[1:]))
        out = np.rint(np.stack(outs)).astype(np.int64)
        return wrap(out, inst.get_output_datatype(0))

    def run(self, x: np.ndarray, capture: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Images (N, ...) as the graph input takes them -> (outputs (N, k) int64, {captured tensor: (N, m)})."""
        self._batch = n = len(x)
        shape = tuple(self.model.get_tensor_shape(self.in_name))
        values = {self.in_name: np.rint(np.asarray(x, dtype=np.float64)).astype(np.int64).reshape(n, *shape[1:])}
        for node, op, inst in self.nodes:
            src = values[node.input[0]]
            if op == "MVAU":
                out = self._mvau(node, inst, src)
            elif op == "Thresholding":
                out = self._thresholding(node, inst, src)
            elif op == "LabelSelect":
                out = self._labelselect(node, inst, src)
            elif op in PASS_VALUES:
                out = wrap(src, inst.get_output_datatype(0))
            else:
                out = self._finn_node(node, inst, src)
            shape = tuple(self.model.get_tensor_shape(node.output[0]))
            values[node.output[0]] = np.asarray(out).reshape(n, *shape[1:])
        out = values[self.out_name].reshape(n, -1)
        return out, {name: values[name].reshape(n, -1) for name in capture}


def host_side(parent, x: np.ndarray) -> np.ndarray:
    """Apply what the dataflow parent does before its partition: only the NCHW -> NHWC Transpose is allowed."""
    if parent is None:
        return x
    for node in parent.graph.node:
        if node.op_type == "StreamingDataflowPartition":
            break
        perm = [int(v) for a in node.attribute if a.name == "perm" for v in a.ints]
        if node.op_type != "Transpose" or perm != [0, 2, 3, 1]:
            raise TypedExecutionError(f"parent node {node.name} ({node.op_type}) before the partition "
                                      "is not the input NCHW -> NHWC Transpose")
        x = x.transpose(0, 2, 3, 1)
    return x


def typed_execute(model, x_uint8: np.ndarray, parent=None, capture: tuple[str, ...] = ()):
    """Type-faithful execution of a dataflow model on uint8 pixels (N, C, H, W).

    ``parent`` (a dataflow parent whose partition does not span the network): only a leading
    NCHW -> NHWC Transpose may precede the partition (what bnnflow's host does); it is applied here.
    Returns ``(outputs, captured, wraps)``: outputs (N, k) int64, captured {tensor in ``capture``: (N, m)
    int64}, wraps {node: images with a value that did not fit}.
    """
    x = host_side(parent, np.asarray(x_uint8))
    executor = TypedExecutor(model)
    out, captured = executor.run(x, capture)
    return out, captured, executor.wraps


def check_typed(step: str, model, golden, parent=None) -> dict:
    """Type-faithful top-1 on the golden set against Brevitas; raise VerificationError on any difference.

    Returns the fields added to the step's record in summary.json: ``typed_top1_equal`` and
    ``typed_wraps`` (node -> golden images on which a value did not fit its type; only nonzero ones).
    """
    from hw_builds.verify import VerificationError

    out, _, wraps = typed_execute(model, golden.x, parent=parent)
    top1 = out[:, 0] if out.shape[1] == 1 else np.argmax(out, axis=1)
    wrong = np.flatnonzero(top1 != golden.top1)
    overflowed = {name: k for name, k in wraps.items() if k}
    if len(wrong):
        i = wrong[0]
        raise VerificationError(
            f"step {step}: type-faithful execution differs from Brevitas on {len(wrong)}/{len(top1)} golden samples "
            f"(first: test index {golden.indices[i]}, Brevitas class {golden.top1[i]}, hardware types give "
            f"{top1[i]}); values overflowed their type at {overflowed or 'no node'}")
    return {"typed_top1_equal": int(len(top1)), "typed_wraps": overflowed}


class TypedTracer:
    """The built accelerator's final dataflow model, type-faithfully executed, as a verify_xnor path.

    :meth:`trace` gives the XNOR reference's named intermediates (``layer{i}.in_bits``, ``layer{i}.acc``
    for layers without fused thresholds; taps as in hw_builds.xnor_verify) and ``logits``: the class
    scores entering LabelSelect through the reference's output affine (FINN absorbed that affine into
    LabelSelect, so the scores are what the accelerator compares), and ``label_select``: the index
    the accelerator returns, checked equal to the first maximum of those scores.
    """

    def __init__(self, onnx_path: str | Path, parent_path: str | Path | None = None,
                 output_mul: np.ndarray | None = None, output_add: np.ndarray | None = None):
        from hw_builds.execute import load_model
        from hw_builds.xnor_verify import _layer_taps

        self.path = Path(onnx_path)
        model = load_model(onnx_path)
        self.parent = load_model(parent_path) if parent_path is not None else None
        self.executor = TypedExecutor(model, onnx_path)
        self.taps = _layer_taps(self.executor.model)
        self.output_mul, self.output_add = output_mul, output_add
        out = self.executor.model.graph.output[0].name
        producer = self.executor.model.find_producer(out)
        if producer is None or base_op(producer.op_type) != "LabelSelect":
            raise TypedExecutionError(f"{onnx_path}: expected the graph to end in LabelSelect")
        self.scores_name = producer.input[0]

    @property
    def wraps(self) -> dict[str, int]:
        return dict(self.executor.wraps)

    def trace(self, x_uint8: np.ndarray, progress=None) -> dict[str, np.ndarray]:
        x = host_side(self.parent, np.asarray(x_uint8))
        names = tuple(t for _, t in self.taps) + (self.scores_name,)
        out, captured = self.executor.run(x, names)
        result = {name: captured[tensor].astype(np.int32) for name, tensor in self.taps}
        scores = captured[self.scores_name]
        if not np.array_equal(out[:, 0], np.argmax(scores, axis=1)):
            raise TypedExecutionError(f"{self.path}: LabelSelect's index is not the first maximum of its input")
        mul = 1.0 if self.output_mul is None else self.output_mul
        add = 0.0 if self.output_add is None else self.output_add
        result["logits"] = (scores * mul + add).astype(np.float32)
        result["label_select"] = out[:, 0]
        if progress is not None:
            progress.update(len(x))
        return result
