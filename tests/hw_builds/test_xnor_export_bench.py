"""bench_xnor's plumbing (not its speed): both engines compute the same network, the JSON has units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from host.xnor import XnorReference
from host.xnor_random import MLP_WIDTHS, random_xnor_model
from hw_builds.xnor_bench import bench_xnor, binary_macs_per_image, torch_pm1_network


def test_torch_baseline_is_the_same_network() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    model = random_xnor_model(MLP_WIDTHS["sfc"], rng)
    x = rng.integers(0, 256, size=(64, 784), dtype=np.uint8)
    # +-1 dot products of <= 784 terms are exact in float32, so the logits agree to the last bit
    np.testing.assert_array_equal(torch_pm1_network(model)(x), XnorReference(model).logits(x))
    assert binary_macs_per_image(model) == 784 * 256 + 2 * 256 * 256 + 256 * 10


def test_bench_writes_json_with_units(tmp_path: Path) -> None:
    out = tmp_path / "xnor.json"
    result = bench_xnor(out, ["tfc"], [1, 5], repeats=3, threads=1, seed=1)
    assert json.loads(out.read_text()) == result
    engines = {r["engine"] for r in result["results"]}
    assert {"torch_fp32", "xnor_numpy"} <= engines
    for row in result["results"]:
        assert row["images_per_s"] > 0 and row["latency_ms_p99"] >= row["latency_ms_p50"] > 0
        assert row["binary_gmac_per_s"] == pytest.approx(row["images_per_s"] * row["binary_macs_per_image"] / 1e9)
    assert set(result["summary"]) == {"tfc_batch1_speedup_x", "tfc_batch5_speedup_x"}
