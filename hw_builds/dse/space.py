"""Each HW layer's legal foldings with FINN's own cycle and resource estimates.

Candidate values are SetFolding's (the divisors of the layer's channel count, ``divisors`` in
finn.transformation.fpgadataflow.set_folding); whether a value is legal is FINN's own verdict:
the layer's shape functions, calc_wmem / calc_tmem and get_ap_int_max_w raise on a PE that does
not divide MH, a SIMD that does not divide MW, a Reshape PE that does not divide the row, or a
weight stream wider than AP_INT_MAX_W (the probes of ``hw_builds.custom_steps.folding_problem``).
Costs are the layer's ``get_exp_cycles`` and ``node_res_estimation`` (what FINN's
estimate_layer_cycles / estimate_layer_resources report), on the graph as the build estimates it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hw_builds.custom_steps import folding_problem
from hw_builds.dse import CNV_REFUSAL
from hw_builds.dse.graph import hw_nodes
from host.refusal import RefusedInput

COST_RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")
# Memory styles FINN estimates differently: "auto"/"block" count BRAM, "distributed" LUTRAM. "ultra" is
# left out: FINN requires runtime_writeable_weights=1 for URAM weights, which changes the driver's interface.
RAM_STYLES = ("auto", "block", "distributed")
# Coupled layers (a depthwise SWG's SIMD must equal its VVAU/Pool's PE) are not searched layer by layer.
COUPLED_OPS = ("VVAU", "Pool", "ConvolutionInputGenerator")
# The exported (QONNX) ops that become such layers, and what the FINN front end's HW graph has in their place
# (sliding-window generator, pooling layers): a network with any of them is refused before the search runs.
CONV_OPS = ("Conv", "MaxPool", "AveragePool", "ConvTranspose")
HW_CONV_OPS = ("ConvolutionInputGenerator", "StreamingMaxPool", "Pool", "VVAU")


class UnsupportedGraphError(RefusedInput):
    """The graph has layers whose foldings are coupled (depthwise conv); the search handles dense graphs."""


@dataclass(frozen=True)
class LayerOption:
    """One setting of one layer: its attributes, FINN's cycles per image and resource estimate."""

    attrs: dict = field(hash=False)
    cycles: int
    cost: tuple[float, float, float, float]  # LUT, BRAM_18K, URAM, DSP (FINN's estimate)

    def dominates(self, other: LayerOption) -> bool:
        mine, theirs = (self.cycles, *self.cost), (other.cycles, *other.cost)
        return all(a <= b for a, b in zip(mine, theirs)) and mine != theirs


def divisors(n: int) -> list[int]:
    """FINN SetFolding's candidate values for a parallelism attribute bounded by ``n``."""
    from finn.transformation.fpgadataflow.set_folding import divisors as finn_divisors

    return list(finn_divisors(int(n)))


def _attr_candidates(inst) -> dict[str, list]:
    """Values to try per attribute this layer exposes (default first)."""
    import numpy as np

    types = inst.get_nodeattr_types()
    in_last = int(np.prod(inst.get_normal_input_shape()[-1:]))
    out_last = int(np.prod(inst.get_normal_output_shape()[-1:]))
    candidates: dict[str, list] = {}
    if "SIMD" in types:
        bound = int(inst.get_nodeattr("MW")) if "MW" in types else in_last
        candidates["SIMD"] = divisors(bound)
    if "PE" in types:
        bound = int(inst.get_nodeattr("MH")) if "MH" in types else max(in_last, out_last)
        candidates["PE"] = divisors(bound)
    decoupled = "mem_mode" not in types or inst.get_nodeattr("mem_mode") == "internal_decoupled"
    if "ram_style" in types and len(types["ram_style"]) > 3 and decoupled:
        allowed = types["ram_style"][3]
        default = inst.get_nodeattr("ram_style")
        candidates["ram_style"] = [default] + [s for s in RAM_STYLES if s in allowed and s != default]
    if "resType" in types and len(types["resType"]) > 3 and _multiplies(inst):
        allowed = types["resType"][3]
        default = inst.get_nodeattr("resType")
        candidates["resType"] = [default] + [s for s in ("lut", "dsp") if s in allowed and s != default]
    return candidates


def _multiplies(inst) -> bool:
    """Whether the layer's products are real multiplications (not XNOR or sign selection).

    finn-hlslib computes an XNOR layer with ``XnorMul`` and a binary-weight layer by sign selection;
    FINN's LUT estimate would still credit a DSP with the multiplier's LUTs, which the hardware
    cannot realize, so resType is only varied where both operands are wider than one bit.
    """
    types = inst.get_nodeattr_types()
    if "binaryXnorMode" in types and inst.get_nodeattr("binaryXnorMode"):
        return False
    try:
        return inst.get_input_datatype(0).bitwidth() > 1 and inst.get_input_datatype(1).bitwidth() > 1
    except Exception:  # a layer without a weight input
        return False


def refuse_convolutions(model, onnx_path) -> None:
    """Raise UnsupportedGraphError naming ``onnx_path`` and its first convolution / pooling node, if any
    (checked on the exported graph or the FINN front end's HW graph, before the search spends minutes on it)."""
    conv = [n for n in model.graph.node if n.op_type in CONV_OPS or n.op_type.startswith(HW_CONV_OPS)]
    if conv:
        raise UnsupportedGraphError(f"{onnx_path}: refused, a convolutional network ({len(conv)} Conv / pooling "
                                    f"nodes, first {conv[0].name} ({conv[0].op_type})): {CNV_REFUSAL}")


def layer_options(model, fpgapart: str) -> dict[str, list[LayerOption]]:
    """Every HW layer's legal, non-dominated options, keyed by layer name, in graph order.

    Raises UnsupportedGraphError for coupled (depthwise) layers. The model is left unchanged.
    """
    from qonnx.custom_op.registry import getCustomOp

    out: dict[str, list[LayerOption]] = {}
    for node in hw_nodes(model):
        if node.op_type.startswith(COUPLED_OPS):
            raise UnsupportedGraphError(f"layer {node.name} ({node.op_type}): {CNV_REFUSAL}")
        inst = getCustomOp(node)
        candidates = _attr_candidates(inst)
        original = {a: inst.get_nodeattr(a) for a in candidates}
        options: list[LayerOption] = []
        try:
            for values in itertools.product(*candidates.values()):
                attrs = dict(zip(candidates, values))
                for attr, value in attrs.items():
                    inst.set_nodeattr(attr, value)
                if folding_problem(inst) is not None:
                    continue
                res = inst.node_res_estimation(fpgapart)
                cost = tuple(float(res.get(r, 0)) for r in COST_RESOURCES)
                options.append(LayerOption(attrs, int(inst.get_exp_cycles()), cost))
        finally:
            for attr, value in original.items():
                inst.set_nodeattr(attr, value)
        if not options:
            options.append(LayerOption({}, int(inst.get_exp_cycles()),
                                       tuple(float(inst.node_res_estimation(fpgapart).get(r, 0)) for r in COST_RESOURCES)))
        out[node.name] = prune(options)
    return out


def prune(options: list[LayerOption]) -> list[LayerOption]:
    """The options no other option dominates (in cycles and every resource); the first of equals is kept."""
    kept: list[LayerOption] = []
    for opt in options:
        if any(k.dominates(opt) or (k.cycles, k.cost) == (opt.cycles, opt.cost) for k in kept):
            continue
        kept = [k for k in kept if not opt.dominates(k)] + [opt]
    return sorted(kept, key=lambda o: (o.cycles, o.cost))
