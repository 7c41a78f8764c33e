"""`host validate`: the test set through the accelerator and the XNOR reference, budgets checked.

What it proves: every test image gets the same top-1 class from the accelerator (board or FINN
emulation, fed the bytes the board's DMA would read) as from the independent XNOR-popcount
reference; any difference fails and names the first differing image. It also measures, on the
same CPU, batch-1 latency (p50/p99) and batch-N throughput of both, reads board power where pynq
has rails, and evaluates the budgets of ``validate_config.json`` (the drone case: accuracy > 90 %,
latency < 50 ms, power < 100 mW).

Budget statuses: ``pass``, ``fail``, or ``not_measured`` (power without rails); ``not_measured``
never fails a run. The emulation backend's latency is FINN's cycle estimate and is labelled so.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from host.accelerator import Opener, open_accelerator, predictions_from_output, run_batch
from host.atomic import write_json_atomic
from host.package import MANIFEST, load_package, sha256_file
from host.power import power_monitor
from host.refusal import RefusedInput
from host.timing import batched_pass, latency_us

DEFAULT_CONFIG = {
    "batch_size": 100,
    "latency_repeats": 200,
    "enforce_budgets": True,
    "budgets": {"accuracy_min_pct": 90.0, "latency_max_ms": 50.0, "power_max_mw": 100.0},
}


def _progress(total: int, label: str):
    """A tqdm bar where tqdm exists (not guaranteed on a board image), else a no-op."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None, lambda n: None
    bar = tqdm(total=total, desc=label, unit="img", file=sys.stderr, mininterval=1.0)
    return bar, bar.update


def _budget(value: float | None, limit: float, below: bool, basis: str, reason: str | None = None) -> dict:
    if value is None:
        return {"limit": limit, "value": None, "status": "not_measured", "basis": basis, "reason": reason}
    ok = value < limit if below else value > limit
    return {"limit": limit, "value": round(float(value), 4), "status": "pass" if ok else "fail", "basis": basis}


def validate_package(
    package_dir: str | Path,
    backend: str,
    out_path: str | Path | None = None,
    *,
    batch_size: int | None = None,
    latency_repeats: int | None = None,
    limit: int | None = None,
    reference_backend: str = "auto",
    accelerator=None,
    openers: Mapping[str, Opener] | None = None,
    replay: str | Path | None = None,
) -> dict:
    """Validate a deployment package with ``backend`` ("board" or "emulation"); return the report.

    The package is verified (manifest sha256) before anything is loaded. ``limit`` takes the first
    N test images only. The report is written to ``out_path`` (atomically) when given.
    ``accelerator`` replaces the backend that ``backend`` names (tests drive their own);
    ``openers`` supplies backends host/ does not open itself (see host.accelerator.open_accelerator:
    the FINN side hands in the emulation). ``replay`` is the recording the "replay" backend answers from
    (host/replay.py); its ReplayMismatch propagates.
    """
    from host.xnor import XnorReference  # after the manifest check: it reads xnor_model.npz

    pkg = load_package(package_dir)
    cfg = {**DEFAULT_CONFIG, **pkg.config}
    budgets = {**DEFAULT_CONFIG["budgets"], **cfg.get("budgets", {})}
    batch_size = int(cfg["batch_size"] if batch_size is None else batch_size)  # 0 is refused, not a default
    repeats = int(cfg["latency_repeats"] if latency_repeats is None else latency_repeats)
    if batch_size < 1 or repeats < 1:
        raise RefusedInput(f"batch size ({batch_size}) and latency repeats ({repeats}) must be >= 1")
    x, labels, indices = pkg.load_testset()
    if limit is not None:
        if limit < 1:
            raise RefusedInput(f"--limit must be >= 1, got {limit}")
        x, labels, indices = x[:limit], labels[:limit], indices[:limit]
    reference = XnorReference.load(pkg.xnor_model, backend=reference_backend)
    if reference.in_features != int(np.prod(x.shape[1:])):
        raise RefusedInput(
            f"{pkg.xnor_model}: the reference takes {reference.in_features} values per image, "
            f"the test set has {x.shape[1:]}"
        )

    x_acc = pkg.settings.from_nchw(x)  # (N, *ishape_normal): the accelerator's input layout
    acc = accelerator if accelerator is not None else open_accelerator(backend, pkg, batch_size, openers, replay=replay)
    try:
        reference.predict(x[:1], batch_size=1)  # warm-up (numba compiles on first use), not timed
        bar, tick = _progress(len(x), f"{backend} accelerator")
        acc_pred, acc_pass = batched_pass(lambda b: predictions_from_output(run_batch(acc, b)), x_acc, batch_size, tick)
        if bar is not None:
            bar.close()
        ref_pred, ref_pass = batched_pass(lambda b: reference.predict(b, batch_size=len(b)), x, batch_size)
        ref_latency = latency_us(lambda b: reference.predict(b, batch_size=1), x, repeats)
        estimate = acc.latency_estimate()
        if estimate is None:
            acc_latency = {"kind": "measured", **latency_us(lambda b: run_batch(acc, b), x_acc, repeats)}
        else:
            acc_latency = {
                **estimate.as_json(),
                "latency_us_p50": round(estimate.latency_us, 3),
                "latency_us_p99": round(estimate.latency_us, 3),
            }
        power = _measure_power(acc, reference, x_acc, x, batch_size)
    finally:
        acc.close()

    differs = np.flatnonzero(acc_pred != ref_pred)
    first = None
    if len(differs):
        i = int(differs[0])
        first = {"position": i, "test_index": int(indices[i]), "accelerator": int(acc_pred[i]), "reference": int(ref_pred[i]), "label": int(labels[i])}
    accuracy = 100.0 * float(np.mean(acc_pred == labels))
    acc_p99_ms = acc_latency["latency_us_p99"] / 1000.0
    acc_power = power["accelerator"]["above_idle_w"] * 1000.0 if power.get("accelerator") else None
    budget_report = {
        "accuracy_pct": _budget(accuracy, budgets["accuracy_min_pct"], below=False, basis="accelerator top-1 on the test set"),
        "latency_ms": _budget(
            acc_p99_ms,
            budgets["latency_max_ms"],
            below=True,
            basis=f"accelerator batch-1 latency p99 ({acc_latency['kind']})",
        ),
        "power_mw": _budget(
            acc_power,
            budgets["power_max_mw"],
            below=True,
            basis="board power while the accelerator runs, minus idle (sum of pynq rails)",
            reason=power.get("reason"),
        ),
    }
    agreement_ok = len(differs) == 0
    budgets_ok = all(b["status"] != "fail" for b in budget_report.values())
    report = {
        "model": pkg.model,
        "board": pkg.board,
        "target": pkg.target,
        "backend": backend,
        "package_manifest_sha256": sha256_file(pkg.root / MANIFEST),
        "images": int(len(x)),
        "accuracy_pct": round(accuracy, 4),
        "reference_accuracy_pct": round(100.0 * float(np.mean(ref_pred == labels)), 4),
        "agreement": {
            "exact": agreement_ok,
            "matching_images": int(len(x) - len(differs)),
            "differing_images": int(len(differs)),
            "agreement_pct": round(100.0 * (len(x) - len(differs)) / len(x), 4),
            "first_difference": first,
            # the emulation computes in the accelerator's fixed-width types (hw_builds/typed_exec.py)
            "arithmetic": getattr(acc, "arithmetic", "the accelerator's own"),
            "values_overflowing_type": getattr(acc, "wraps", None),
        },
        "accelerator": {"latency": acc_latency, "batch": acc_pass},
        "reference": {
            "engine": f"XNOR-popcount ({reference.backend})",
            "latency": {"kind": "measured", **ref_latency},
            "batch": ref_pass,
        },
        "power": power,
        "budgets": budget_report,
        "enforce_budgets": bool(cfg["enforce_budgets"]),
        # images where Brevitas' float32 forward differs from the exact function, proven ties (verify.json)
        "brevitas_float_ties": pkg.config.get("brevitas_float_ties"),
        "passed": agreement_ok and (budgets_ok or not cfg["enforce_budgets"]),
        "cpu": {"machine": platform.machine(), "processor": platform.processor() or None, "python": platform.python_version(), "numpy": np.__version__},
    }
    if backend == "emulation":
        report["accelerator"]["batch"]["note"] = (
            "wall time of FINN's python emulation on this CPU, not accelerator speed; see latency for FINN's estimate"
        )
    if backend == "replay":
        report["accelerator"]["batch"]["note"] = (
            f"lookups of outputs recorded by the {acc.recorded_backend} backend on {acc.recorded_on}, not accelerator speed; "
            "see latency for FINN's estimate"
        )
        report["accelerator"]["recording"] = {"path": str(acc.path), "recorded_on": acc.recorded_on,
                                              "recorded_backend": acc.recorded_backend}
    if out_path is not None:
        write_json_atomic(out_path, report)
    return report


def _measure_power(acc, reference, x_acc: np.ndarray, x: np.ndarray, batch_size: int) -> dict:
    """Board power during repeated accelerator and reference runs, or null figures with the reason."""
    monitor, reason = power_monitor()
    if monitor is None:
        return {"accelerator": None, "reference": None, "idle_w": None, "reason": reason}
    batch, batch_acc = x[:batch_size], x_acc[:batch_size]
    idle = monitor.idle_w()
    acc_reading = monitor.measure(lambda: len(run_batch(acc, batch_acc)))
    ref_reading = monitor.measure(lambda: len(reference.predict(batch, batch_size=len(batch))))
    return {
        "idle_w": round(idle, 4),
        "accelerator": acc_reading.as_json(idle),
        "reference": ref_reading.as_json(idle),
        "rails": sorted(monitor.sensors),
        "reason": None,
    }
