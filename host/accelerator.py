"""One accelerator interface, three backends: the PYNQ board, the FINN emulation used in CI, and the
replay of an accelerator's recorded answers on another CPU (host/replay.py).

Both take a batch packed exactly as the driver ``settings.json`` describes (uint8, (N,
*ishape_packed)) and return the packed output buffer (uint8, (N, *oshape_packed)), so the packing,
folding and I/O layout that the board sees are exercised in CI too. Packing lives in
:mod:`host.packing`; everything here is numpy only.

host/ knows only this interface, the board and the replay: ``host.board`` (pynq + finn-plus-driver,
imported lazily) and ``host.replay`` (numpy) are the backends it opens itself. Any other backend is handed in by the caller as an
*opener* (``openers={"emulation": ...}``): the FINN emulation is supplied by the FINN side
(``python -m hw_builds.validate_emulated``, the validate_accelerator rule), never imported from here,
so the code copied to a board has no arrow into hw_builds/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from host.packing import DriverSettings

BACKENDS = ("board", "emulation", "replay")


@dataclass(frozen=True)
class LatencyEstimate:
    """FINN's analytical performance estimate: cycles at the configured clock, never a measurement."""

    fclk_mhz: float
    critical_path_cycles: int  # latency of one image through the pipeline
    max_cycles: int  # initiation interval of the slowest layer

    @property
    def latency_us(self) -> float:
        return self.critical_path_cycles / self.fclk_mhz

    @property
    def throughput_images_per_s(self) -> float:
        return self.fclk_mhz * 1e6 / self.max_cycles

    def as_json(self) -> dict:
        return {
            "kind": "estimate",
            "source": "FINN dataflow_performance analysis (cycles at the configured clock), not measured",
            "fclk_mhz": self.fclk_mhz,
            "critical_path_cycles": self.critical_path_cycles,
            "max_cycles": self.max_cycles,
            "latency_us": round(self.latency_us, 3),
            "throughput_images_per_s": round(self.throughput_images_per_s, 1),
        }


@runtime_checkable
class Accelerator(Protocol):
    """What `host validate` drives. ``execute`` must accept any N >= 1 (partial batches included)."""

    backend: str  # "board" or "emulation"
    settings: DriverSettings

    def execute(self, packed_inputs: np.ndarray) -> np.ndarray:
        """(N, *ishape_packed) uint8 -> (N, *oshape_packed) uint8."""
        ...

    def latency_estimate(self) -> LatencyEstimate | None:
        """FINN's estimate where the backend cannot measure real latency (emulation), else None."""
        ...

    def close(self) -> None:
        ...


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (no FPGA device, or no finn-plus for the emulation)."""


# An opener builds a backend's accelerator from a verified package (host.package.Package) and a batch size.
Opener = Callable[..., Accelerator]

# Where a backend host/ does not open itself comes from; the message of a run that was not handed one.
SUPPLIED_ELSEWHERE = {
    "emulation": "the emulation backend is FINN's and is supplied by bnnflow's FINN side on the build machine: "
                 "python -m hw_builds.validate_emulated validate --package DIR --backend emulation "
                 "(needs finn-plus); on a board use --backend board",
}


def open_accelerator(backend: str, package, batch_size: int, openers: Mapping[str, Opener] | None = None,
                     replay: str | None = None) -> Accelerator:
    """Open ``backend`` on a verified deployment package (host.package.Package).

    ``board`` and ``replay`` are opened here (lazily: pynq + finn-plus-driver; host/replay.py, which needs
    ``replay``, the recording to answer from); any other backend only through ``openers`` (name ->
    ``opener(package, batch_size)``), which the caller supplies. Raises :class:`BackendUnavailable` for a
    backend nobody supplied, with where it comes from.
    """
    if openers and backend in openers:
        return openers[backend](package, batch_size)
    if backend == "board":
        from host.board import BoardAccelerator

        return BoardAccelerator(package, batch_size=batch_size)
    if backend in SUPPLIED_ELSEWHERE:
        raise BackendUnavailable(SUPPLIED_ELSEWHERE[backend])
    if backend == "replay":
        if replay is None:
            raise BackendUnavailable("the replay backend needs --replay FILE (a recording made by host.replay.record_replay)")
        from host.replay import ReplayAccelerator

        return ReplayAccelerator.open(package, replay)
    raise BackendUnavailable(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def run_batch(acc: Accelerator, x: np.ndarray) -> np.ndarray:
    """Pack raw inputs (N, *ishape_normal), execute, unpack: (N, *oshape_normal) int64."""
    packed = acc.settings.pack_input(x)
    out = acc.execute(packed)
    return acc.settings.unpack_output(out)


def predictions_from_output(values: np.ndarray) -> np.ndarray:
    """Top-1 class per image from the unpacked output.

    A bnnflow accelerator ends with FINN's LabelSelect (TopK): one class index per image. An
    accelerator that streams all class scores instead gives the first argmax.
    """
    flat = values.reshape(values.shape[0], -1)
    if flat.shape[1] == 1:
        return flat[:, 0].astype(np.int64)
    return np.argmax(flat, axis=1).astype(np.int64)
