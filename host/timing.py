"""Latency and throughput of a batch function, measured the same way for accelerator and reference.

Batch-1 latency: ``time.perf_counter()`` around single-image calls, median and p99 over repeats.
Batch-N throughput: one pass over all images in batches of N, the final partial batch included
(images / total seconds). The pass's outputs are returned, so the timed pass is also the one
whose predictions are checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def latency_us(fn: Callable[[np.ndarray], object], x: np.ndarray, repeats: int, warmup: int = 3) -> dict:
    """p50/p99 (and the raw samples) of ``fn(x[i:i+1])`` in microseconds over ``repeats`` images (cycling through x)."""
    if repeats < 1 or len(x) == 0:
        raise ValueError("latency needs at least one image and one repeat")
    for i in range(min(warmup, len(x))):
        fn(x[i : i + 1])
    samples = np.empty(repeats)
    for r in range(repeats):
        i = r % len(x)
        t0 = time.perf_counter()
        fn(x[i : i + 1])
        samples[r] = time.perf_counter() - t0
    samples *= 1e6
    return {
        "latency_us_p50": round(float(np.percentile(samples, 50)), 3),
        "latency_us_p99": round(float(np.percentile(samples, 99)), 3),
        "latency_repeats": repeats,
        # every sample, so a reader (the report's box plot) sees the distribution, not two quantiles
        "latency_us_samples": [round(float(v), 3) for v in samples],
    }


def batched_pass(
    fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, dict]:
    """Run ``fn`` over x in batches of ``batch_size`` (last one partial); outputs and throughput."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) == 0:
        raise ValueError("no images to run (empty test set)")
    outputs, seconds = [], 0.0
    for lo in range(0, len(x), batch_size):
        batch = x[lo : lo + batch_size]
        t0 = time.perf_counter()
        out = fn(batch)
        seconds += time.perf_counter() - t0
        outputs.append(np.asarray(out))
        if progress is not None:
            progress(len(batch))
    return np.concatenate(outputs), {
        "batch_size": batch_size,
        "batches": -(-len(x) // batch_size),
        "images": len(x),
        "seconds": round(seconds, 6),
        "throughput_images_per_s": round(len(x) / seconds, 1) if seconds > 0 else None,
    }
