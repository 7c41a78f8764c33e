"""summary.json of a FINN build: FINN's estimates, the board's capacity, and what was verified.

Everything here is read from the reports FINN wrote under ``report/`` (estimate_network_performance,
estimate_layer_resources, estimate_layer_cycles, the folding it chose or applied), so the
summary cannot drift from FINN's own numbers; the board side comes from hw_builds/boards.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from hw_builds.boards import Board
from hw_builds.custom_steps import overfull_resources

SUMMARY_RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")  # FINN estimates these; FF it does not


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FINN report missing (did step_generate_estimate_reports run?)")
    return json.loads(path.read_text())


def _resources(entry: dict) -> dict[str, float]:
    return {r: float(entry.get(r, 0.0)) for r in SUMMARY_RESOURCES}


def build_summary(output_dir: Path, board: Board, build: dict, verified: list[dict]) -> dict:
    """Collect FINN's estimates and bnnflow's checks of one build into the summary dict."""
    report = Path(output_dir) / "report"
    perf = _read_json(report / "estimate_network_performance.json")
    layers = _read_json(report / "estimate_layer_resources.json")
    cycles = _read_json(report / "estimate_layer_cycles.json")
    folding = {k: v for k, v in _read_json(report / "final_folding_config.json").items() if k != "Defaults"}
    clk_ns = float(build["clk_period_ns"])
    latency_cycles = int(perf["critical_path_cycles"])
    total = _resources(layers["total"])
    capacity = board.capacity()
    over = overfull_resources(layers["total"], capacity)
    return {
        "model": build["model"],
        "board": board.name,
        "fpga_part": board.part,
        "target": build["target"],
        "clock": {"period_ns": clk_ns, "mhz": 1000.0 / clk_ns},
        "target_fps": build["target_fps"],
        "folding_config_file": build["folding_config"],
        "estimate": {
            "throughput_fps": float(perf["estimated_throughput_fps"]),
            "max_cycles_per_frame": int(perf["max_cycles"]),
            "bottleneck_layer": perf["max_cycles_node_name"],
            "latency_cycles": latency_cycles,
            "latency_us": latency_cycles * clk_ns / 1000.0,
        },
        "resources_total": total,
        "resources_per_layer": {k: _resources(v) for k, v in layers.items() if k != "total"},
        "cycles_per_layer": {k: int(v) for k, v in cycles.items()},
        "board_capacity": capacity,
        "utilization": {r: (total[r] / capacity[r] if capacity[r] else None) for r in SUMMARY_RESOURCES},
        "fits": not over,
        "overfull_resources": over,
        "folding": folding,
        "folding_repairs": build["folding_repairs"],
        "verified_steps": [v["step"] for v in verified],
        "verification": verified,
        "golden_samples_checked": verified[0]["samples"] if verified else 0,
        "golden_float_ties": build.get("golden_float_ties", 0),  # near a boundary on the exact path (README)
        "hw_model": "intermediate_models/step_generate_estimate_reports.onnx",
        "partition_spans_network": build["partition_spans_network"],
        "parent_model": "intermediate_models/dataflow_parent.onnx",  # run_finn_model's parent_path if not spanning
        "driver_settings": "driver/settings.json",
        "steps": build["steps"],
        "seconds_per_step": build["seconds_per_step"],
        "build_seconds": build["build_seconds"],
        "resource_note": "FINN analytical estimates of the dataflow layers only (no IODMA/interconnect/FIFOs); FF not estimated",
        "capacity_source": board.source,
    }


# The attributes FINN itself writes into auto_folding_config.json (step_target_fps_parallelization).
FOLDING_ATTRS = ["PE", "SIMD", "ram_style", "ram_style_thresholds", "resType", "mem_mode", "runtime_writeable_weights"]


def write_final_folding(model, path: Path) -> None:
    """The folding the HW model was built with (after target_fps, repairs and a folding file), FINN's format."""
    from finn.util.config import extract_model_config_to_json

    extract_model_config_to_json(model, str(path), FOLDING_ATTRS)
