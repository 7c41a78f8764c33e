"""Emulation backend: the compiled FINN dataflow model behind the board's packed-byte interface.

Why: CI has no FPGA, but it must still exercise what the board sees: the packing, the folding and
the I/O layout of ``settings.json``. This backend takes the very bytes the input DMA would read,
unpacks them with FINN's own ``packed_bytearray_to_finnpy`` (an implementation independent of
host/packing.py), runs the folded FINN HW model with the arithmetic of its generated types
(``hw_builds.typed_exec``: accumulators wrap at their width, thresholds compare in their type, outputs
are sliced; FINN's python execution would compute with unbounded integers), and packs the result with
FINN's ``finnpy_to_packed_bytearray`` into the output DMA layout.

Latency: FINN's ``dataflow_performance`` analysis of the same model (critical-path and slowest-
layer cycles) at the configured clock, always reported as an estimate, never as a measurement.
"""

from __future__ import annotations

from pathlib import Path

import finn  # noqa: F401 - fail at import, not mid-run, where finn-plus is missing (board image)
import numpy as np

from host.accelerator import BackendUnavailable, LatencyEstimate
from host.packing import DriverSettings
from hw_builds.execute import FinnExecutionError, load_model
from hw_builds.finn_env import prepare_finn_environment
from hw_builds.typed_exec import TypedExecutor

# FINN's PYNQ driver (finn_plus_driver.overlays.dma.FINNDMAOverlay) packs with both reversals.
DRIVER_PACKING = {"reverse_inner": True, "reverse_endian": True}


def finn_estimate(model, fclk_mhz: float) -> LatencyEstimate:
    """FINN's cycle estimate of a folded dataflow model at ``fclk_mhz``."""
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance

    perf = model.analysis(dataflow_performance)
    return LatencyEstimate(
        fclk_mhz=float(fclk_mhz),
        critical_path_cycles=int(perf["critical_path_cycles"]),
        max_cycles=int(perf["max_cycles"]),
    )


def check_host_side_of_parent(parent, path) -> None:
    """The dataflow parent's nodes outside the partition must be what bnnflow's host already does.

    On the board the bitfile implements the dataflow partition only; whatever FINN left in the parent
    graph runs on the CPU or nowhere. bnnflow's host does one such thing: the NCHW -> NHWC transpose of
    the input (``DriverSettings.from_nchw``), which CNV's parent holds as a leading Transpose. Anything
    else (a node after the partition, another layout change) would make the emulation compute more than
    the board, so it is refused.
    """
    nodes = list(parent.graph.node)
    sdp = [i for i, node in enumerate(nodes) if node.op_type == "StreamingDataflowPartition"]
    if len(sdp) != 1:
        raise BackendUnavailable(f"{path}: expected one dataflow partition, found {len(sdp)}")
    before, after = nodes[: sdp[0]], nodes[sdp[0] + 1 :]
    perms = [[int(v) for a in node.attribute if a.name == "perm" for v in a.ints] for node in before]
    if after or any(node.op_type != "Transpose" for node in before) or perms not in ([], [[0, 2, 3, 1]]):
        outside = [node.op_type for node in before + after]
        raise BackendUnavailable(
            f"{path}: FINN left {outside} outside the dataflow partition; only the input NCHW -> NHWC "
            "Transpose (done by the host) is supported, anything else would not run on the board")


class EmulatedAccelerator:
    """The accelerator of a deployment package, executed by FINN in python mode on packed bytes."""

    backend = "emulation"
    arithmetic = "type-faithful (hw_builds/typed_exec.py: the generated code's fixed-width types)"

    def __init__(self, settings: DriverSettings, model_path: str | Path, parent_path: str | Path | None = None):
        prepare_finn_environment()
        from qonnx.core.datatype import DataType

        self.settings = settings
        self.model_path = Path(model_path)
        try:
            self.model = load_model(model_path)
            if parent_path is not None:  # the accelerator is the partition alone, as on the board
                check_host_side_of_parent(load_model(parent_path), parent_path)
        except FinnExecutionError as err:
            raise BackendUnavailable(str(err)) from err
        self._idt = DataType[settings.idt.name]
        self._odt = DataType[settings.odt.name]
        if settings.idt.name != "UINT8":
            raise BackendUnavailable(f"{settings.idt.name} input: the emulation runs raw uint8 pixels only")
        in_name = self.model.graph.input[0].name
        model_in = tuple(self.model.get_tensor_shape(in_name))
        if int(np.prod(model_in)) != int(np.prod(settings.ishape_normal)):
            raise BackendUnavailable(
                f"{self.model_path}: model input {model_in} does not match settings.json ishape_normal "
                f"{settings.ishape_normal}"
            )
        model_dt = self.model.get_tensor_datatype(in_name)
        if model_dt.name != settings.idt.name:
            raise BackendUnavailable(
                f"{self.model_path}: model input type {model_dt.name} differs from settings.json idt {settings.idt.name}"
            )
        self._estimate = finn_estimate(self.model, settings.fclk_mhz or 100.0)
        self._typed = TypedExecutor(self.model, self.model_path)

    @property
    def wraps(self) -> dict[str, int]:
        """Node -> images so far on which a value did not fit its type (0 everywhere for a proven build)."""
        return dict(self._typed.wraps)

    @classmethod
    def from_package(cls, package) -> "EmulatedAccelerator":
        if package.emulation_model is None:
            raise BackendUnavailable(f"{package.root}: the package has no emulation/model.onnx (target {package.target})")
        return cls(package.settings, package.emulation_model, package.emulation_parent)

    def execute(self, packed_inputs: np.ndarray) -> np.ndarray:
        """(N, *ishape_packed) uint8 -> (N, *oshape_packed) uint8, through FINN's own (un)packing."""
        from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy

        s = self.settings
        packed = s.check_packed_input(packed_inputs)
        n = packed.shape[0]
        folded = packed_bytearray_to_finnpy(packed, self._idt, (n, *s.ishape_folded), **DRIVER_PACKING)
        x = np.asarray(folded).reshape(n, *s.ishape_normal).astype(np.uint8)  # UINT8 values, exact
        try:
            out, _ = self._typed.run(x)  # (N, outputs) int64, computed in the hardware's types
        except FinnExecutionError:
            raise
        except Exception as err:
            raise FinnExecutionError(f"{self.model_path}: FINN python execution failed ({type(err).__name__}: {err})") from err
        out_folded = np.asarray(out, dtype=np.float32).reshape(n, *s.oshape_folded)
        out_packed = finnpy_to_packed_bytearray(out_folded, self._odt, **DRIVER_PACKING)
        return np.ascontiguousarray(out_packed, dtype=np.uint8).reshape(n, *s.oshape_packed)

    def latency_estimate(self) -> LatencyEstimate:
        return self._estimate

    def close(self) -> None:
        pass
