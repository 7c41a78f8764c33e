"""Synthetic stage outputs in the layouts the producing code writes (read from models/train.py,
hw_builds/summary.py, hw_builds/xnor_verify.py, host/validate.py and a real TFC-w1a1 run), so the
report tests run in seconds without training or FINN. test_report_contract.py checks the layouts against
the real producers where they are cheap to run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

HISTORY_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds")
# FINN's per-layer estimates of a TFC-w1a1 at target_fps 100,000 (estimate_layer_cycles / _resources).
TFC_LAYERS = {
    "Reshape_rtl_0": (784, 0, 0), "Thresholding_rtl_0": (784, 104, 0), "MVAU_hls_0": (896, 687, 4),
    "MVAU_hls_1": (512, 358, 1), "MVAU_hls_2": (512, 358, 1), "MVAU_hls_3": (640, 312, 1), "LabelSelect_hls_0": (10, 0, 0),
}
BOARD_LUTS = {"Pynq-Z1": 53_200, "ZCU104": 230_400}


def _write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_training(root: Path, model: str, test_accuracy: float = 0.9, epochs: int = 4, n_test: int = 200,
                   dataset: str = "mnist", seed: int = 0) -> None:
    """metrics.json, history.csv (models/train.py layout) and test_predictions.npz with that accuracy."""
    rng = np.random.default_rng(seed)
    out = root / "results" / model / "train"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in range(1, epochs + 1):
        acc = test_accuracy * (1 - 0.5 / e)
        rows.append({"epoch": e, "lr": 0.02 / e, "train_loss": 1.5 / e, "train_accuracy": acc, "val_loss": 1.6 / e,
                     "val_accuracy": acc - 0.01, "epoch_seconds": 2.5})
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    _write_json(out / "metrics.json", {
        "model": model, "dataset": dataset, "test_accuracy": test_accuracy, "test_loss": 0.4,
        "val_accuracy": rows[-1]["val_accuracy"], "best_epoch": epochs, "epochs": epochs, "train_seconds": 10.0,
        "seed": 0, "n_train": 1000, "n_val": 100, "n_test": n_test,
        "recipe": {"epochs": epochs, "batch_size": 100}, "footprint": {"quantized_weights": 59008, "weight_bits": 1},
        "checkpoint_sha256": "0" * 64, "torch_version": "2.13.0+cpu",
    })
    y_true = rng.integers(0, 10, size=n_test).astype(np.int64)
    y_pred = y_true.copy()
    wrong = rng.choice(n_test, size=round((1 - test_accuracy) * n_test), replace=False)
    y_pred[wrong] = (y_true[wrong] + rng.integers(1, 10, size=len(wrong))) % 10
    pred_dir = root / "results" / model / "report"
    pred_dir.mkdir(parents=True, exist_ok=True)
    np.savez(pred_dir / "test_predictions.npz", y_true=y_true, y_pred=y_pred,
             logits=rng.normal(size=(n_test, 10)).astype(np.float32), source=np.array("synthetic"))


def write_verify(root: Path, model: str, images: int = 200) -> None:
    """results/{model}/xnor/verify.json (hw_builds/xnor_verify.py layout, trimmed)."""
    _write_json(root / "results" / model / "xnor" / "verify.json", {
        "model": model, "images": images, "images_finn": 20, "xnor_backend": "numpy",
        "accuracy": {"xnor": 0.9, "brevitas": 0.9, "finn_streamlined": 0.9, "finn_hw": 0.9},
        "top1_agree_with_xnor": {"brevitas": {"agree": images, "of": images},
                                 "finn_streamlined": {"agree": 20, "of": 20}, "finn_hw": {"agree": 20, "of": 20}},
        "intermediates": {}, "xnor_ties": 1, "max_abs_logit_diff_vs_xnor": {"brevitas": 0.0},
        "top1_all_four_agree": {"agree": 20, "of": 20}, "first_difference": None, "passed": True,
        "float_ties": {"count": 0, "first": [], "max_margin": None, "max_margin_over_bound": None},
    })


def write_build(root: Path, model: str, board: str, speedup: int = 1) -> dict:
    """hw_builds/{model}/{board}/summary.json (hw_builds/summary.py layout) + FINN's report/*.json."""
    layers = {name: (c // speedup, lut * speedup, bram) for name, (c, lut, bram) in TFC_LAYERS.items()}
    cycles = {n: c for n, (c, _, _) in layers.items()}
    resources = {n: {"LUT": float(lut), "BRAM_18K": float(bram), "URAM": 0.0, "DSP": 0.0} for n, (_, lut, bram) in layers.items()}
    total = {r: sum(v[r] for v in resources.values()) for r in ("LUT", "BRAM_18K", "URAM", "DSP")}
    bottleneck = max(cycles, key=cycles.get)
    build = root / "hw_builds" / model / board
    fps = 1e8 / cycles[bottleneck]
    _write_json(build / "report" / "estimate_layer_cycles.json", cycles)
    _write_json(build / "report" / "estimate_layer_resources.json", {
        **{n: {**v, "BRAM_efficiency": 1, "URAM_efficiency": 1} for n, v in resources.items()}, "total": total})
    _write_json(build / "report" / "final_folding_config.json", {
        "Defaults": {}, **{n: {"PE": 1, "SIMD": 1} for n in layers if n.startswith("MVAU")}})
    _write_json(build / "report" / "estimate_network_performance.json", {
        "critical_path_cycles": sum(cycles.values()), "max_cycles": cycles[bottleneck],
        "max_cycles_node_name": bottleneck, "estimated_throughput_fps": fps, "estimated_latency_ns": 10.0 * sum(cycles.values())})
    summary = {
        "model": model, "board": board, "fpga_part": "xc7z020clg400-1", "target": "emulation",
        "clock": {"period_ns": 10.0, "mhz": 100.0}, "target_fps": 100000 * speedup, "folding_config_file": None,
        "estimate": {"throughput_fps": fps, "max_cycles_per_frame": cycles[bottleneck], "bottleneck_layer": bottleneck,
                     "latency_cycles": sum(cycles.values()), "latency_us": sum(cycles.values()) / 100.0},
        "resources_total": total, "resources_per_layer": resources, "cycles_per_layer": cycles,
        "board_capacity": {"LUT": BOARD_LUTS[board], "FF": 1, "BRAM_18K": 280, "URAM": 0, "DSP": 220},
        "utilization": {"LUT": total["LUT"] / BOARD_LUTS[board], "BRAM_18K": total["BRAM_18K"] / 280, "URAM": None, "DSP": 0.0},
        "fits": True, "overfull_resources": [], "folding": {}, "verified_steps": ["step_tidy_up"], "verification": [],
        "golden_samples_checked": 100, "build_seconds": 30.0,
        "range_proof": {"all_fit": True, "scope": "every input", "type_mends": [
            {"node": "MVAU_hls_0", "K": 784, "finn": {"accDataType": "INT10"}, "bnnflow": {"accDataType": "UINT10"}}],
            "nodes": [{"node": "MVAU_hls_0", "op_type": "MVAU_hls", "kind": "MVAU", "mode": "popcount", "K": 784,
                       "SIMD": 49, "PE": 16, "accumulator_interval": [0, 784], "accumulator_type": "UINT10",
                       "output_interval": [0, 1], "output_type": "BINARY", "fits": True, "problems": [],
                       "thresholds": {"count": 1, "type": "UINT10", "equivalent_to_reference": True}},
                      {"node": "LabelSelect_hls_0", "op_type": "LabelSelect_hls", "kind": "LabelSelect",
                       "mode": "argmax", "K": 10, "accumulator_interval": None, "accumulator_type": None,
                       "output_interval": [0, 9], "output_type": "UINT8", "fits": True, "problems": [],
                       "thresholds": None}]},
    }
    _write_json(build / "summary.json", summary)
    return summary


def write_validation(root: Path, model: str, board: str, accuracy_pct: float = 90.0, samples: bool = False) -> dict:
    """results/{model}/{board}/validation.json (host/validate.py layout, emulation backend)."""
    ref_latency = {"kind": "measured", "latency_us_p50": 18.0, "latency_us_p99": 85.0, "latency_repeats": 200}
    if samples:
        ref_latency["latency_us_samples"] = list(np.random.default_rng(1).gamma(4.0, 5.0, size=200).round(3))
    report = {
        "model": model, "board": board, "target": "emulation", "backend": "emulation", "images": 200,
        "accuracy_pct": accuracy_pct, "reference_accuracy_pct": accuracy_pct,
        "agreement": {"exact": True, "matching_images": 200, "differing_images": 0, "agreement_pct": 100.0, "first_difference": None},
        "accelerator": {"latency": {"kind": "estimate", "fclk_mhz": 100.0, "critical_path_cycles": 4138, "max_cycles": 896,
                                    "latency_us": 41.38, "throughput_images_per_s": 111607.1,
                                    "latency_us_p50": 41.38, "latency_us_p99": 41.38},
                        "batch": {"batch_size": 100, "batches": 2, "images": 200, "seconds": 3.0, "throughput_images_per_s": 66.7}},
        "reference": {"engine": "XNOR-popcount (numpy)", "latency": ref_latency,
                      "batch": {"batch_size": 100, "batches": 2, "images": 200, "seconds": 0.03, "throughput_images_per_s": 6666.7}},
        "power": {"accelerator": None, "reference": None, "idle_w": None, "reason": "pynq is not installed"},
        "budgets": {
            "accuracy_pct": {"limit": 90.0, "value": accuracy_pct, "status": "pass" if accuracy_pct > 90 else "fail", "basis": "b"},
            "latency_ms": {"limit": 50.0, "value": 0.0414, "status": "pass", "basis": "b"},
            "power_mw": {"limit": 100.0, "value": None, "status": "not_measured", "basis": "b", "reason": "no rails"},
        },
        "enforce_budgets": True, "passed": accuracy_pct > 90,
    }
    _write_json(root / "results" / model / board / "validation.json", report)
    return report


def write_tree(root: Path, models=("tfc_w1a1", "sfc_w1a1"), boards=("Pynq-Z1", "ZCU104"), full: bool = True) -> Path:
    """A results tree for every model and board; ``full=False`` writes training outputs only."""
    for i, model in enumerate(models):
        write_training(root, model, test_accuracy=0.9 + 0.03 * i, seed=i)
        if full:
            write_verify(root, model)
            for j, board in enumerate(boards):
                write_build(root, model, board, speedup=1 + 3 * j)
                write_validation(root, model, board, accuracy_pct=90.0 + 3 * i, samples=(j == 1))
    if full:
        _write_json(root / "results" / "bench" / "xnor.json", {"images_per_s": {"numpy": 5000.0, "numba": 60000.0}})
    return root


def write_dse(root: Path, boards=("Pynq-Z1", "ZCU104")) -> list[dict]:
    """results/dse/ as summarize_dse writes it (summary.json's rows, pareto.png and setfolding.png drawn by
    reporting.dse's own plot functions): 9 MLP variants per board, lfc_w2a2 too large for the first board."""
    import matplotlib.pyplot as plt

    from reporting.dse import plot_pareto, plot_setfolding

    rows, sf_rows = [], []
    models = [f"{net}_{bits}" for net in ("tfc", "sfc", "lfc") for bits in ("w1a1", "w1a2", "w2a2")]
    for j, board in enumerate(boards):
        for i, model in enumerate(models):
            row = {"model": model, "board": board, "status": "fits", "test_accuracy_pct": 90.0 + 0.5 * i,
                   "io_bound_images_per_s": 1_020_408.0 * (1 + j), "io_bytes_per_image": 784, "dma_width_bits": 64}
            if model == "lfc_w2a2" and j == 0:
                row.update({"status": "does_not_fit", "bound": "does_not_fit", "built": False})
            else:
                row.update({"bound": "io" if i < 3 else "fabric:LUT", "images_per_s": 1e6 / (1 + i) * (1 + j),
                            "LUT": 2000.0 * (1 + i), "BRAM_18K": 4.0 + i, "URAM": 0.0, "DSP": 0.0,
                            "LUT_pct": 100.0 * 2000 * (1 + i) / BOARD_LUTS[board], "BRAM_18K_pct": 1.0 + i,
                            "setfolding_images_per_s": 0.9e6 / (1 + i) * (1 + j), "setfolding_LUT": 2600.0 * (1 + i),
                            "built": i == 0})
            rows.append(row)
    for fps in (10_000, 100_000):
        sf_rows.append({"model": "tfc_w1a1", "board": boards[0], "target_fps": fps, "mvau_wwidth_max": 36,
                        "setfolding_images_per_s": 1.1 * fps, "search_images_per_s": 1.1 * fps,
                        "setfolding_LUT": fps / 50, "search_LUT": fps / 60, "setfolding_BRAM_18K": 7,
                        "search_BRAM_18K": 7, "setfolding_fits_budget": True})
    out = root / "results" / "dse"
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in (("pareto", plot_pareto(rows)), ("setfolding", plot_setfolding(sf_rows))):
        fig.savefig(out / f"{name}.png", format="png", dpi=60)
        plt.close(fig)
    _write_json(out / "summary.json", {"designs": rows, "setfolding": sf_rows})
    return rows
