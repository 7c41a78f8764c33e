"""Latency and throughput are measured the same way for accelerator and reference (numpy + stdlib only)."""

from __future__ import annotations

import numpy as np
import pytest

from host.timing import batched_pass, latency_us


def test_latency_reports_its_samples_and_their_quantiles() -> None:
    x = np.zeros((7, 4), np.uint8)
    calls = []
    lat = latency_us(lambda b: calls.append(len(b)), x, repeats=25, warmup=2)
    assert calls == [1] * 27  # warm-up calls, then one image per timed call
    samples = np.asarray(lat["latency_us_samples"])
    assert len(samples) == lat["latency_repeats"] == 25 and (samples > 0).all()
    assert lat["latency_us_p50"] == pytest.approx(np.percentile(samples, 50), abs=1e-3)
    assert lat["latency_us_p99"] == pytest.approx(np.percentile(samples, 99), abs=1e-3)


def test_batched_pass_keeps_the_final_partial_batch() -> None:
    x = np.arange(23)
    out, stats = batched_pass(lambda b: b * 2, x, batch_size=10)
    np.testing.assert_array_equal(out, x * 2)
    assert stats["batches"] == 3 and stats["images"] == 23


@pytest.mark.parametrize(("x", "batch"), [(np.arange(0), 4), (np.arange(3), 0)])
def test_empty_input_or_batch_is_refused(x: np.ndarray, batch: int) -> None:
    with pytest.raises(ValueError):
        batched_pass(lambda b: b, x, batch_size=batch)
