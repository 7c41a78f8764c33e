"""bench_xnor's plumbing (not its speed): both engines compute the same network (MLP and CNV), the JSON has units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from host.xnor import XnorReference
from host.xnor_random import MLP_WIDTHS, random_conv_model, random_xnor_model
from hw_builds.xnor_bench import bench_xnor, binary_macs_per_image, torch_pm1_conv_network, torch_pm1_network


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


def test_torch_cnv_twin_is_the_same_network() -> None:
    """A small CNV-like net (8-bit input, pooling, a 3x3 map flattened NHWC into the dense layers):
    the independent conv2d twin and the XNOR reference give the same logits to the last bit."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    convs = [(16, 3, 1, False), (64, 3, 1, True), (8, 2, 1, False)]
    model = random_conv_model(rng, input_shape=(3, 12, 12), convs=convs, fc=[32])
    x = rng.integers(0, 256, size=(32, 3, 12, 12), dtype=np.uint8)
    logits = torch_pm1_conv_network(model)(x)
    np.testing.assert_array_equal(logits, XnorReference(model).logits(x))
    np.testing.assert_array_equal(logits, XnorReference(model, backend="numpy").trace(x)["logits"])
    # output pixels * K * M: 10x10 conv (K 27), 8x8 conv (K 144), 2x2 conv on the 4x4 pool output (K 256), 3x3x8 -> 32 -> 10
    assert binary_macs_per_image(model) == 100 * 27 * 16 + 64 * 144 * 64 + 9 * 256 * 8 + 72 * 32 + 32 * 10


def test_bench_cnv_entries(tmp_path: Path) -> None:
    """cnv rows for every engine and batch; the numpy path above its batch cap is timed smaller and says so."""
    out = tmp_path / "xnor.json"
    result = bench_xnor(out, ["cnv"], [1, 3], repeats=3, threads=1, seed=2, numpy_conv_max_batch=2,
                        check_images=16)
    assert json.loads(out.read_text()) == result
    rows = {(r["batch"], r["engine"]): r for r in result["results"]}
    assert {(b, e) for b in (1, 3) for e in ("torch_fp32", "xnor_numpy")} <= set(rows)
    assert {r["model"] for r in rows.values()} == {"cnv"}
    cnv_macs = 30 * 30 * 27 * 64 + 28 * 28 * 576 * 64 + 12 * 12 * 576 * 128 + 10 * 10 * 1152 * 128 \
        + 3 * 3 * 1152 * 256 + 2304 * 256 + 256 * 512 + 512 * 512 + 512 * 10
    for (batch, engine), row in rows.items():
        assert row["binary_macs_per_image"] == cnv_macs
        assert row["measured_batch"] == (2 if (engine == "xnor_numpy" and batch == 3) else batch)
        assert row["images_per_s"] == pytest.approx(row["measured_batch"] / row["latency_ms_p50"] * 1e3)
    assert [n for n in result["notes"] if "xnor_numpy" in n and "batch 3" in n]
    assert set(result["summary"]) == {"cnv_batch1_speedup_x", "cnv_batch3_speedup_x"}


def test_bench_rejects_unknown_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model families"):
        bench_xnor(tmp_path / "x.json", ["resnet"], [1], repeats=3)


@pytest.mark.parametrize("change", [lambda z: -z, lambda z: z + 0.5], ids=["other_top1", "same_top1_other_logits"])
def test_bench_refuses_a_different_torch_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change) -> None:
    """The check runs for CNV too, on logits as well as top-1 (random nets put almost every image in one
    class, so top-1 alone is weak): a twin computing something else stops the run before timing."""
    import hw_builds.xnor_bench as xb

    real = xb.torch_pm1_conv_network
    monkeypatch.setattr(xb, "torch_pm1_conv_network", lambda model: (lambda x, f=real(model): change(f(x))))
    with pytest.raises(AssertionError, match="cnv: .* disagree on top-1"):
        bench_xnor(tmp_path / "x.json", ["cnv"], [1], repeats=3, check_images=16)
    assert not (tmp_path / "x.json").exists()
