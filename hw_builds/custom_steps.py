"""bnnflow's own build steps, FINN-style ``(model, cfg) -> model`` functions with a docstring each.

They sit between FINN's steps (see ``hw_builds.build_config.INJECTIONS``) and do five jobs:
tell FINN the input is raw uint8 pixels; end the HW graph in a top-1 LabelSelect as finn-examples does;
give every threshold its exact integer value (hw_builds/exact_thresholds.py, within each neuron's
accumulator range, so FINN never trips over a threshold outside the popcount range); mend or refuse a folding that FINN's code generation would reject; and fail early with a
one-line cause (bad folding file, design larger than the board). The emulation target ends
with the Zynq-build prefix that ``step_make_driver`` needs for driver/settings.json.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hw_builds.accumulators import step_mend_xnor_accumulators, step_record_reference_thresholds
from hw_builds.boards import RESOURCES, get_board
from hw_builds.exact_thresholds import step_exact_thresholds, step_record_exact_function
from hw_builds.finn_env import import_build_steps
from host.refusal import InputFileError, RefusedInput, read_json

QONNX_QUANT_OPS = ("Quant", "BipolarQuant", "BinaryQuant", "Trunc")
# what makes a graph quantized: QONNX's quantizers, or FINN-ONNX's MultiThreshold (an imported FINN-ONNX model)
QUANTIZER_OPS = (*QONNX_QUANT_OPS, "MultiThreshold")
# FINN node attributes a folding file may set (FINN's own list in step_apply_folding_config).
FOLDING_ATTRS_EXTRA = ("Defaults",)
FOLDING_REPAIRS_PROP = "bnnflow_folding_repairs"  # model metadata: what step_repair_auto_folding changed


class UnsupportedModelError(RefusedInput):
    """The ONNX graph is not a QONNX export bnnflow can build (message names file and cause)."""


class FoldingConfigError(RefusedInput):
    """The folding file names a layer or attribute the model does not have."""


class DesignDoesNotFitError(RuntimeError):
    """FINN's resource estimate exceeds the board's capacity (names the resource and layer)."""


def require_quantizer(model) -> None:
    """Raise UnsupportedModelError where the graph has none of :data:`QUANTIZER_OPS` (QONNX's quantizers or
    FINN-ONNX's MultiThreshold): a float model, which FINN would turn into float layers."""
    if not any(model.get_nodes_by_op_type(op) for op in QUANTIZER_OPS):
        raise UnsupportedModelError(
            "the graph has no QONNX quantizer (Quant/BipolarQuant) and no FINN-ONNX MultiThreshold: not a "
            "quantized model"
        )


def step_annotate_uint8_input(model, cfg):
    """Annotate the graph input as UINT8: the model takes raw pixels 0..255 and scales them itself.

    FINN folds the scaling (x/255*2-1) and the input quantizer into the first threshold layer
    only when it knows the input is an 8-bit unsigned integer; the accelerator then reads bytes.
    Also refuses graphs without QONNX quantizers, which FINN would turn into float layers.
    """
    from qonnx.core.datatype import DataType

    inputs = [i.name for i in model.graph.input if model.get_initializer(i.name) is None]
    if len(inputs) != 1 or inputs[0] != model.graph.input[0].name:
        raise UnsupportedModelError(f"expected one graph input (the pixels) first, found {inputs}")
    require_quantizer(model)
    model.set_tensor_datatype(model.graph.input[0].name, DataType["UINT8"])
    return model


# Trailing HW layers of the class scores that a top-1 head may drop, as FINN's AbsorbScalarMulAddIntoTopK
# drops their ONNX originals (Mul, Add) when TopK is inserted before streamlining.
SCORE_AFFINE_OPS = {"ElementwiseMul": "Mul", "ElementwiseAdd": "Add"}


def step_insert_topk(model, cfg):
    """End the HW graph in a top-1 LabelSelect, as finn-examples does: the accelerator returns the class index.

    The front end's graph ends in the class scores (the last MVAU's accumulators, then FINN's
    ElementwiseMul / ElementwiseAdd of the folded final scale and offset) because the XNOR reference
    exports them. Here, per board: TopK(k=1) is appended (qonnx's InsertTopK); a scalar positive
    multiplication or scalar addition directly before it is dropped, since it cannot change the
    order (FINN's AbsorbScalarMulAddIntoTopK, same conditions); and FINN's InferLabelSelectLayer turns
    the TopK into the LabelSelect HW layer. The result is the graph FINN builds when TopK is inserted
    before streamlining. ONNX TopK breaks ties towards the lower index, as numpy.argmax on Brevitas' logits.
    """
    from qonnx.core.datatype import DataType
    from qonnx.transformation.general import GiveUniqueNodeNames, RemoveUnusedTensors, SortGraph
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.insert_topk import InsertTopK

    from finn.transformation.fpgadataflow.convert_to_hw.label_select import InferLabelSelectLayer

    out_name = model.graph.output[0].name
    model = model.transform(InsertTopK(k=1))
    while True:
        topk = model.get_nodes_by_op_type("TopK")[0]  # re-read: each transform returns a new graph
        producer = model.find_producer(topk.input[0])
        if producer is None or producer.op_type not in SCORE_AFFINE_OPS:
            break
        param = model.get_initializer(producer.input[1])
        scalar = param is not None and all(d == 1 for d in param.shape)
        if not scalar or (producer.op_type == "ElementwiseMul" and not float(param.reshape(-1)[0]) > 0):
            break
        model.graph.node.remove(producer)
        topk.input[0] = producer.input[0]
        model.set_tensor_datatype(topk.input[0], DataType["FLOAT32"])  # as FINN's absorb does; re-inferred below
        model = model.transform(InferShapes())
        model = model.transform(InferDataTypes())
    model = model.transform(RemoveUnusedTensors())
    model = model.transform(InferLabelSelectLayer())
    if model.get_nodes_by_op_type("TopK"):
        raise UnsupportedModelError("the class scores are not integers, so FINN cannot make a LabelSelect "
                                    "layer of the top-1 head (a float layer remains before it)")
    model = model.transform(SortGraph())
    model = model.transform(GiveUniqueNodeNames())
    if model.graph.output[0].name != out_name:  # the class index keeps the graph output's name ("global_out")
        model.rename_tensor(model.graph.output[0].name, out_name)
    model = model.transform(InferDataLayouts())
    model = model.transform(InferDataTypes())
    return model.transform(InferShapes())


def step_check_folding_config(model, cfg):
    """Refuse a folding file that names layers or attributes the model does not have.

    FINN's ApplyConfig only warns about unknown layers and would silently build a different
    design; here the build stops and names the layer, the file and the layers that exist.
    """
    from qonnx.custom_op.registry import getCustomOp

    path = cfg.folding_config_file
    if path is None:
        return model
    try:  # host.refusal's reader: missing, non-UTF-8, not JSON or not an object is one line naming the file
        config = read_json(path, "JSON folding config (layer name -> attributes)")
    except InputFileError as exc:
        raise FoldingConfigError(str(exc)) from exc
    nodes = {n.name: n for n in model.graph.node}
    for layer, attrs in config.items():
        if layer in FOLDING_ATTRS_EXTRA:
            continue
        if layer not in nodes:
            raise FoldingConfigError(
                f"{path}: layer {layer!r} is not in the model; its layers are {', '.join(nodes)}"
            )
        if not isinstance(attrs, dict):
            raise FoldingConfigError(f"{path}: layer {layer!r} must map to an object of attributes")
        known = getCustomOp(nodes[layer]).get_nodeattr_types()
        for attr in attrs:
            if attr not in known:
                raise FoldingConfigError(
                    f"{path}: layer {layer!r} ({nodes[layer].op_type}) has no attribute {attr!r}"
                )
            _check_int_attr(path, layer, attr, attrs[attr], known[attr][0])
    return model


def _check_int_attr(path, layer: str, attr: str, value, kind: str) -> None:
    """Refuse a non-integer value of an integer node attribute ("i"), and PE / SIMD below 1.

    FINN would fail on them far from the file (a string PE in a modulo, PE 0 as a division by zero).
    """
    if kind != "i":
        return
    least = 1 if attr in ("PE", "SIMD") else None
    if isinstance(value, bool) or not isinstance(value, int) or (least is not None and value < least):
        need = f"an integer >= {least}" if least is not None else "an integer"
        raise FoldingConfigError(f"{path}: layer {layer}: {attr} must be {need}, got {json.dumps(value)}")


def folding_problem(inst, model=None) -> str | None:
    """FINN's own complaint about a layer's folding, or None.

    Asks the layer what FINN itself asserts on later: its shape and stream functions, its weight /
    threshold memory, the HLS stream width limit and, given the ``model`` holding its parameters, the
    conversion of its weights and thresholds to the hardware layout (``get_hw_compatible_*_tensor``,
    where e.g. a Thresholding's "NumChannels divisable by PE" lives). Every HW layer type answers
    through the functions it has; none is listed here by type.
    """
    from finn.util.exception import FINNInternalError, FINNUserError

    probes = [(name, ()) for name in ("get_folded_input_shape", "get_folded_output_shape", "get_instream_width",
                                      "get_outstream_width",
                                      "calc_wmem", "calc_tmem",  # MVAU/VVAU check MH % PE and MW % SIMD only here
                                      "get_ap_int_max_w")]  # HLS layers: no stream wider than AP_INT_MAX_W
    if model is not None:
        for tensor in list(inst.onnx_node.input)[1:]:
            value = model.get_initializer(tensor)
            if value is None:
                continue
            # thresholds are (channels, steps) with steps < channels' fan-in; FINN tells them apart by the input index
            kind = "threshold" if tensor == _threshold_input(inst) else "weight"
            probes.append((f"get_hw_compatible_{kind}_tensor", (value,)))
    for probe, args in probes:
        try:
            getattr(inst, probe)(*args)
        except (AttributeError, NotImplementedError):  # the layer has no such notion
            continue
        except (AssertionError, FINNUserError, FINNInternalError) as exc:
            return " ".join(str(exc).split()) or f"{probe} failed"
    return None


def _threshold_input(inst) -> str | None:
    """The input tensor holding a layer's thresholds: input 1 of a Thresholding, input 2 of an MVAU/VVAU."""
    inputs = list(inst.onnx_node.input)
    if "NumChannels" in inst.get_nodeattr_types():  # Thresholding: (in, thresholds)
        return inputs[1] if len(inputs) > 1 else None
    return inputs[2] if len(inputs) > 2 else None


def step_repair_auto_folding(model, cfg):
    """Lower a PE that FINN's target_fps folding chose but that does not divide the layer's stream.

    finn-plus 1.6.1's SetFolding gives the input Reshape (1,1,28,28) -> (1,784) of an MLP a PE
    that divides 784 but not 28 (e.g. 8 for 1M images/s), which only fails later, in code
    generation ("PE must divide last axis"). The largest valid PE below FINN's choice is used
    instead; a folding file's explicit choices are not touched (they come after this step).
    """
    from qonnx.custom_op.registry import getCustomOp

    repairs = []
    for node in model.graph.node:
        if not node.domain.startswith("finn.custom_op.fpgadataflow"):
            continue
        inst = getCustomOp(node)
        if "PE" not in inst.get_nodeattr_types() or folding_problem(inst, model) is None:
            continue
        chosen = int(inst.get_nodeattr("PE"))
        for pe in range(chosen - 1, 0, -1):
            inst.set_nodeattr("PE", pe)
            if folding_problem(inst, model) is None:
                print(f"step_repair_auto_folding: {node.name} PE {chosen} -> {pe} (FINN's choice did not divide its stream)")
                repairs.append({"layer": node.name, "attribute": "PE", "finn_choice": chosen, "used": pe})
                break
        else:
            inst.set_nodeattr("PE", chosen)  # nothing helps: step_check_folding names it
    if repairs:
        model.set_metadata_prop(FOLDING_REPAIRS_PROP, json.dumps(repairs))
    return model


def step_check_folding(model, cfg):
    """Refuse a folding FINN's code generation would reject, naming the layer and its PE/SIMD.

    FINN only asserts on an invalid PE/SIMD (one that does not divide the layer's dimensions)
    when it generates code; this check asks every layer's shape functions right after folding.
    """
    from qonnx.custom_op.registry import getCustomOp

    source = f"set in {cfg.folding_config_file}" if cfg.folding_config_file else "chosen for target_fps"
    for node in model.graph.node:
        if not node.domain.startswith("finn.custom_op.fpgadataflow"):
            continue
        inst = getCustomOp(node)
        problem = folding_problem(inst, model)
        if problem is not None:
            attrs = {a: inst.get_nodeattr(a) for a in ("PE", "SIMD") if a in inst.get_nodeattr_types()}
            raise FoldingConfigError(f"layer {node.name} ({node.op_type}) folding {attrs} {source} is invalid: {problem}")
    return model


def resource_estimates(report_dir: Path) -> dict[str, dict[str, float]]:
    """FINN's per-layer resource estimate (report/estimate_layer_resources.json), 'total' included."""
    path = Path(report_dir) / "estimate_layer_resources.json"
    return json.loads(path.read_text())


def overfull_resources(total: dict[str, float], capacity: dict[str, int]) -> list[str]:
    """The resources whose estimate exceeds the capacity (LUT, BRAM_18K, URAM, DSP; FF is unestimated)."""
    return [r for r in RESOURCES if r != "FF" and float(total.get(r, 0)) > capacity[r]]


def make_step_check_fits(fail: bool) -> Callable:
    """A step that compares FINN's estimate with the board and raises (``fail``) when it exceeds it."""

    def step_check_fits(model, cfg):
        """Stop before code generation or synthesis when the estimated design exceeds the board.

        Compares the 'total' of FINN's estimate_layer_resources.json with the part's capacity
        (hw_builds/boards.py) and names the resource and the layer that uses most of it.
        """
        board = get_board(cfg.board)
        layers = resource_estimates(Path(cfg.output_dir) / "report")
        over = overfull_resources(layers["total"], board.capacity())
        if over and fail:
            res = over[0]
            worst = max((k for k in layers if k != "total"), key=lambda k: float(layers[k].get(res, 0)))
            raise DesignDoesNotFitError(
                f"{res}: estimated {float(layers['total'][res]):.0f} exceeds {board.name}'s "
                f"{board.capacity()[res]} ({board.part}); layer {worst} alone uses "
                f"{float(layers[worst][res]):.0f}: lower target_fps or fold that layer more"
            )
        return model

    return step_check_fits


def _name_dma_instances(top) -> None:
    """Name the partitions as MakeZYNQProject names its block-design cells (the driver looks them up).

    Partitions fed by the graph input are idma0, idma1, ...; those feeding the graph output are
    odma0, ...; the rest keep their node name. MakeZYNQProject does this while writing the Vivado
    block design, so without Vivado it is done here with the same rule.
    """
    from qonnx.custom_op.registry import getCustomOp

    idma = odma = 0
    for node in top.get_nodes_by_op_type("StreamingDataflowPartition"):
        producer = top.find_producer(node.input[0]) if node.input else None
        if producer is None:
            name, idma = f"idma{idma}", idma + 1
        elif not top.find_consumers(node.output[0]):
            name, odma = f"odma{odma}", odma + 1
        else:
            name = node.name
        getCustomOp(node).set_nodeattr("instance_name", name)


def zynq_top(model, board: str, fpga_part: str, partition_dir: Path):
    """A copy of the folded HW ``model`` through the graph part of FINN's Zynq build.

    IODMA insertion (AXI width ``pynq_native_port_width[board]``), data width converters,
    specialization, floorplan and dataflow partition, as in ZynqBuild; the partitions are saved
    in ``partition_dir``. The IODMA cells get MakeZYNQProject's idma0/odma0 names.
    """
    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from finn.transformation.fpgadataflow.floorplan import Floorplan
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.util.basic import pynq_native_port_width
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames

    top = copy.deepcopy(model)
    prefix = [
        InsertIODMA(pynq_native_port_width[board]),
        InsertDWC(),
        SpecializeLayers(fpga_part),
        Floorplan(),
        CreateDataflowPartition(partition_model_dir=str(partition_dir)),
    ]
    for transformation in prefix:
        top = top.transform(transformation)
        top = top.transform(GiveUniqueNodeNames())
        top = top.transform(GiveReadableTensorNames())
    _name_dma_instances(top)
    return top


def step_make_zynq_driver(model, cfg):
    """Write driver/settings.json for the PYNQ driver without Vivado.

    FINN's step_make_driver expects the top-level model of its Zynq build; the graph part of
    that build (IODMA insertion, data width converters, specialization, floorplan, dataflow
    partition, as in ZynqBuild; the idma0/odma0 cell names of MakeZYNQProject) needs no Xilinx
    tool, so it runs here on a copy of the folded model. The returned model is the folded HW
    model itself, unchanged.
    """
    steps = import_build_steps()
    part_dir = Path(cfg.output_dir) / "intermediate_models" / "zynq_partitions"
    top = zynq_top(model, cfg.board, cfg._resolve_fpga_part(), part_dir)
    top = steps.step_make_driver(top, cfg)
    top.save(str(Path(cfg.output_dir) / "intermediate_models" / "zynq_top.onnx"))
    return model


def custom_steps(fail_if_not_fits: bool) -> dict[str, Callable]:
    """bnnflow's steps by name, as ``build_config.step_names`` lists them."""
    return {
        # the same mend after each of FINN's two bit-width minimizations
        "step_mend_xnor_accumulators_initial": step_mend_xnor_accumulators,
    } | {
        f.__name__: f
        for f in (
            step_annotate_uint8_input,
            step_insert_topk,
            step_record_exact_function,
            step_exact_thresholds,
            step_record_reference_thresholds,
            step_mend_xnor_accumulators,
            step_repair_auto_folding,
            step_check_folding_config,
            step_check_folding,
            make_step_check_fits(fail_if_not_fits),
            step_make_zynq_driver,
        )
    }
