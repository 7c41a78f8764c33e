"""host/power.py off a board: no rails means power is null with a reason, never a made-up figure."""

from __future__ import annotations

import importlib.util

from host.power import PowerReading, power_monitor


def test_no_rails_here_gives_a_reason() -> None:
    monitor, reason = power_monitor()
    assert monitor is None
    if importlib.util.find_spec("pynq") is None:
        assert "pynq is not installed" in reason
    else:  # board environment: real pynq 4.0 on x86 reads no sensors
        assert "no power sensors" in reason or "get_rails() failed" in reason


def test_reading_figures() -> None:
    r = PowerReading(mean_w=2.5, seconds=2.0, images=1000, samples=40)
    assert r.energy_per_image_j == 0.005
    j = r.as_json(idle_w=2.0)
    assert j["above_idle_w"] == 0.5 and j["energy_per_image_uj"] == 5000.0
