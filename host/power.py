"""Board power with pynq's rails: mean watts and energy per image while a workload runs.

Where it works: boards whose power sensors pynq can read (``pynq.get_rails()`` non-empty), e.g.
ZCU104 (libsensors config shipped) and Ultra96 (INA226 / PMIC). Pynq-Z1/Z2 and KV260 images
expose none, and a PC has none: then :func:`power_monitor` returns ``(None, reason)`` and the
validation reports power as ``null`` with that reason. Figures are the sum of every rail that has
a power sensor (the whole board, not the fabric alone); ``idle_w`` is sampled first so the
workload's increase over idle can be read off too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class PowerReading:
    """Mean power of all rails while a workload ran."""

    mean_w: float
    seconds: float
    images: int
    samples: int

    @property
    def energy_per_image_j(self) -> float:
        return self.mean_w * self.seconds / self.images if self.images else float("nan")

    def as_json(self, idle_w: float) -> dict:
        return {
            "mean_w": round(self.mean_w, 4),
            "above_idle_w": round(self.mean_w - idle_w, 4),
            "energy_per_image_uj": round(self.energy_per_image_j * 1e6, 4),
            "seconds": round(self.seconds, 3),
            "images": self.images,
            "samples": self.samples,
        }


class PowerMonitor:
    """Records pynq rails with a DataRecorder while a callable runs (repeated for at least ``min_seconds``)."""

    def __init__(self, sensors: dict, interval_s: float = 0.05, min_seconds: float = 2.0):
        self.sensors = sensors  # rail name -> pynq sensor with a .value in W
        self.interval_s = interval_s
        self.min_seconds = min_seconds

    def _record(self, run: Callable[[], int]) -> PowerReading:
        import pynq

        recorder = pynq.DataRecorder(*self.sensors.values())
        images = 0
        with recorder.record(self.interval_s):
            start = time.perf_counter()
            while True:
                images += run()
                elapsed = time.perf_counter() - start
                if elapsed >= self.min_seconds:
                    break
        frame = recorder.frame
        columns = [c for c in frame.columns if c != "Mark"]
        if len(frame) == 0 or not columns:
            raise RuntimeError("pynq DataRecorder returned no samples")
        total = frame[columns].sum(axis=1)
        return PowerReading(float(total.mean()), elapsed, images, len(frame))

    def idle_w(self) -> float:
        """Mean power with nothing running, over ``min_seconds``."""
        return self._record(lambda: (time.sleep(self.interval_s), 0)[1]).mean_w

    def measure(self, run: Callable[[], int]) -> PowerReading:
        """``run()`` processes some images and returns how many; it is repeated for min_seconds."""
        return self._record(run)


def power_monitor(interval_s: float = 0.05, min_seconds: float = 2.0) -> tuple[PowerMonitor | None, str | None]:
    """A monitor for this board's power rails, or ``(None, why not)``."""
    try:
        import pynq
    except ImportError:
        return None, "pynq is not installed: not a PYNQ board, so no power rails to read"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rails = pynq.get_rails()
        except Exception as err:  # libsensors or PMBus missing
            return None, f"pynq.get_rails() failed ({type(err).__name__}: {err})"
    sensors = {
        name: rail.power for name, rail in rails.items() if getattr(rail, "power", None) is not None
    }
    if not sensors:
        return None, "pynq.get_rails() found no power sensors on this board (e.g. Pynq-Z1/Z2 have none)"
    return PowerMonitor(sensors, interval_s, min_seconds), None
