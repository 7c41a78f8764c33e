"""The two bounds a design lives within: the board's fabric and the DMA that feeds it.

Fabric: FINN's estimates cover the dataflow layers only (no IODMA, AXI interconnect, FIFOs or
data-width converters, which the Zynq build adds), so the search may use only a fraction of each
resource. The default fractions are FINN's own ``finn.util.platforms.DEFAULT_RES_LIMITS``, the
limits Xilinx recommends for timing closure that FINN's floorplanner applies (LUT 70 %, BRAM_18K,
URAM and DSP 80 %); the rest is the room for what the estimates leave out. Configurable.

I/O: the accelerator cannot take images faster than its input DMA delivers them. The bound is read
from the stream the build really makes: the design's graph goes through the Zynq build's prefix
(InsertIODMA with ``pynq_native_port_width[board]``, InsertDWC, CreateDataflowPartition, as
``step_make_zynq_driver`` does), the input IODMA's AXI width is read off its node and the packed
bytes per image come from FINN's ``get_driver_shapes`` (the driver's ``ishape_packed``).
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hw_builds.boards import get_board

SEARCH_RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")


def finn_resource_limits() -> dict[str, float]:
    """FINN's recommended utilization limits per resource (finn.util.platforms.DEFAULT_RES_LIMITS)."""
    from finn.util.platforms import DEFAULT_RES_LIMITS

    order = ("LUT", "FF", "BRAM_18K", "URAM", "DSP")  # the order of that array (its comment)
    return {r: float(v) for r, v in zip(order, DEFAULT_RES_LIMITS)}


def fabric_budget(board: str, limits: dict[str, float] | None = None) -> dict[str, float]:
    """What the dataflow layers may use on ``board``: capacity x limit per resource (LUT, BRAM_18K, URAM, DSP).

    ``limits`` overrides FINN's defaults per resource (fractions in (0, 1]); raises ValueError outside that.
    """
    lim = finn_resource_limits()
    for key, value in (limits or {}).items():
        if key not in SEARCH_RESOURCES or not 0 < float(value) <= 1:
            raise ValueError(f"fabric limit {key}={value}: use a fraction in (0, 1] of one of {', '.join(SEARCH_RESOURCES)}")
        lim[key] = float(value)
    capacity = get_board(board).capacity()
    return {r: math.floor(capacity[r] * lim[r]) for r in SEARCH_RESOURCES}


@dataclass(frozen=True)
class IOBound:
    """The input (and output) DMA stream of one design on one board."""

    dma_width_bits: int  # AXI width of the input IODMA FINN inserts
    bytes_per_image: int  # packed input bytes per image (driver settings' ishape_packed)
    out_bytes_per_image: int  # packed output bytes per image (oshape_packed)
    out_dma_width_bits: int
    clk_period_ns: float

    @property
    def cycles_per_image(self) -> float:
        """Clock cycles the DMAs need per image (the slower of input and output)."""
        return max(8 * self.bytes_per_image / self.dma_width_bits, 8 * self.out_bytes_per_image / self.out_dma_width_bits)

    @property
    def fps(self) -> float:
        """Images per second the DMAs can carry at the clock."""
        return 1e9 / (self.clk_period_ns * self.cycles_per_image)

    def as_dict(self) -> dict:
        return {
            "dma_width_bits": self.dma_width_bits,
            "bytes_per_image": self.bytes_per_image,
            "out_dma_width_bits": self.out_dma_width_bits,
            "out_bytes_per_image": self.out_bytes_per_image,
            "cycles_per_image": self.cycles_per_image,
            "images_per_s": self.fps,
            "source": "InsertIODMA(pynq_native_port_width[board]) + get_driver_shapes on the design's graph",
        }


def io_bound(model, board: str, clk_period_ns: float) -> IOBound:
    """The DMA bound of ``model`` (a folded HW graph) on ``board``, from FINN's Zynq-build prefix."""
    import numpy as np
    from finn.util.basic import get_driver_shapes
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hw_builds.custom_steps import zynq_top

    with tempfile.TemporaryDirectory(prefix="bnnflow_dse_io_") as tmp:
        top = zynq_top(model, board, get_board(board).part, Path(tmp))
        shapes = get_driver_shapes(top)
        widths = {}
        for sdp in top.get_nodes_by_op_type("StreamingDataflowPartition"):
            part = ModelWrapper(getCustomOp(sdp).get_nodeattr("model"))
            for node in part.get_nodes_by_op_type("IODMA_hls"):
                inst = getCustomOp(node)
                widths[inst.get_nodeattr("direction")] = int(inst.get_nodeattr("intfWidth"))
    return IOBound(
        dma_width_bits=widths["in"],
        bytes_per_image=int(np.prod(shapes["ishape_packed"][0])),
        out_bytes_per_image=int(np.prod(shapes["oshape_packed"][0])),
        out_dma_width_bits=widths["out"],
        clk_period_ns=clk_period_ns,
    )


def host_thresholded(model):
    """The graph with its leading input layers (Reshape, Thresholding of the raw pixels) moved to the host.

    The accelerator then takes the first MVAU's input: the thresholded, bit-packed image (784 bits
    = 98 bytes for TFC at a suitable SIMD, instead of 784 pixel bytes). Returns (graph, removed
    layer names), or (None, []) when the graph does not start with such layers.
    """
    from qonnx.core.datatype import DataType

    out = copy.deepcopy(model)
    removed = []
    while out.graph.node and out.graph.node[0].op_type.split("_")[0] in ("Reshape", "Thresholding"):
        node = out.graph.node[0]
        if len(out.find_consumers(node.output[0]) or []) != 1:
            break
        removed.append(node.name)
        new_in = next(vi for vi in out.graph.value_info if vi.name == node.output[0])
        out.graph.value_info.remove(new_in)
        out.graph.input.remove(out.graph.input[0])
        out.graph.input.insert(0, new_in)
        out.graph.node.remove(node)
    if not removed or not out.graph.node[0].op_type.startswith("MVAU"):
        return None, []
    dt = out.get_tensor_datatype(out.graph.input[0].name)
    if dt.bitwidth() != 1:
        return None, []
    out.set_tensor_datatype(out.graph.input[0].name, DataType[dt.name])
    return out, removed
