"""Training benchmark: test accuracy against epoch budget and wall time, per model (results/bench/training.json).

Each (model, epochs) pair is a separate run of the default recipe with its own cosine schedule, so a
point says what a budget of that many epochs buys, not an intermediate epoch of a longer run.
Runs go ``jobs`` at a time (forked workers: a spawned one would re-run the Snakemake script that
imported this module), one torch thread each; on a shared machine the wall times are pessimistic.
"""

from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from host.atomic import write_json_atomic

# Brevitas bnn_pynq published MNIST test accuracies (%, up to 1000 GPU epochs), for comparison.
PUBLISHED_ACCURACY = {"tfc_w1a1": 93.17, "sfc_w1a1": 97.81, "lfc_w1a1": 98.88,
                      "tfc_w1a2": 94.79, "sfc_w1a2": 98.31, "lfc_w1a2": 98.99, "tfc_w2a2": 96.60, "sfc_w2a2": 98.66}


def _one_run(model: str, epochs: int, dataset_npz: str, work_dir: str, recipe: dict[str, Any],
             train_subset: int | None, test_subset: int | None) -> dict[str, Any]:
    from models.train import train_model

    started = time.perf_counter()
    metrics = train_model(model, dataset_npz, Path(work_dir) / f"{model}_e{epochs}", {**recipe, "epochs": epochs},
                          train_subset=train_subset, test_subset=test_subset, progress=False)
    return {
        "model": model,
        "epochs": epochs,
        "test_accuracy_pct": round(100 * metrics["test_accuracy"], 2),
        "val_accuracy_pct": round(100 * metrics["val_accuracy"], 2),
        "train_seconds": metrics["train_seconds"],
        "seconds_per_epoch": round(metrics["train_seconds"] / epochs, 3),
        "train_cpu_seconds": metrics["train_cpu_seconds"],
        "wall_seconds": round(time.perf_counter() - started, 3),
    }


def bench_training(dataset_npz: str | Path, out_json: str | Path, work_dir: str | Path, budgets: dict[str, list[int]],
                   recipe: dict[str, Any], jobs: int = 1, train_subset: int | None = None,
                   test_subset: int | None = None) -> dict[str, Any]:
    """Train every (model, epochs) of ``budgets`` with ``recipe`` and write the figures as JSON."""
    if not budgets:
        raise ValueError("bench_training needs at least one model with epoch budgets")
    runs = [(m, e) for m, epochs in budgets.items() for e in sorted(epochs)]
    runs.sort(key=lambda run: -run[1])  # longest first, so the pool ends together
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("fork")) as pool:
        futures = [pool.submit(_one_run, m, e, str(dataset_npz), str(work_dir), recipe, train_subset, test_subset)
                   for m, e in runs]
        results = []
        for future in futures:
            results.append(future.result())
            r = results[-1]
            print(f"{r['model']} {r['epochs']} epochs: test {r['test_accuracy_pct']}% in {r['train_seconds']:.0f} s", flush=True)
    results.sort(key=lambda r: (r["model"], r["epochs"]))
    report = {
        "dataset": Path(dataset_npz).stem,
        "recipe": {k: v for k, v in recipe.items() if k != "epochs"},
        "runs": results,
        "published_test_accuracy_pct": {m: PUBLISHED_ACCURACY.get(m) for m in budgets},
        "published_source": "Brevitas bnn_pynq README (up to 1000 epochs on GPU)",
        "host": {"cpu_count": os.cpu_count(), "concurrent_runs": jobs, "torch_threads_per_run": recipe.get("threads", 1),
                 "torch_version": torch.__version__, "machine": platform.machine(),
                 "load_average_at_end": list(os.getloadavg()),
                 "note": "cores shared with other jobs: wall times are upper bounds"},
        "total_wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(out_json, report)
    return report
