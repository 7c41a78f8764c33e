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


def test_interleaved_rounds_take_turns_with_lce_and_keep_each_engines_best_round(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With an LCE timer (workflow/scripts/bench_xnor.py's LCE process), every round times LCE's settings on a
    (model, batch) right before bnnflow's engines on it; each (model, batch, engine) keeps its best round, the
    JSON lists every round and the load average around the run; rows of another network are refused."""
    import hw_builds.xnor_bench as xb
    from host.xnor_format import build_manifest, manifest_sha256

    sha = manifest_sha256(build_manifest(xb.family_model("tfc", 1)[0]))
    calls: list[tuple] = []
    real_time_calls = xb._time_calls
    monkeypatch.setattr(xb, "_time_calls", lambda fn, x, reps, warmup: (calls.append(("bnnflow", len(x))),
                                                                         real_time_calls(fn, x, reps, warmup))[1])
    rates = iter([1000.0, 3000.0, 2000.0, 500.0, 700.0, 600.0])  # (batch 1, batch 5) per round, one setting

    def lce(family: str, batch: int, repeats: int, rounds: int) -> list[dict]:
        calls.append(("lce", batch))
        assert (family, repeats, rounds) == ("tfc", 3, 3)
        r = next(rates)
        return [{"model": family, "batch": batch, "measured_batch": batch, "engine": "lce_default", "repeats": 3,
                 "warmup_calls": 2, "latency_ms_p50": batch / r * 1e3, "latency_ms_p99": batch / r * 1e3,
                 "images_per_s": r, "model_sha256": sha}]

    meta = {"settings": {"default": {}}, "checked_images": {"tfc": 8}, "versions": {"larq_compute_engine": "x"},
            "notes": ["from the LCE process"]}
    result = bench_xnor(tmp_path / "x.json", ["tfc"], [1, 5], repeats=3, seed=1, check_images=16, lce_timer=lce,
                        lce_meta=meta, rounds=3)
    engines = len([r for r in result["results"] if r["batch"] == 1 and not r["engine"].startswith("lce_")])
    turn = [("lce", 1)] + [("bnnflow", 1)] * engines + [("lce", 5)] + [("bnnflow", 5)] * engines
    assert calls == turn * 3  # LCE, then bnnflow, per (model, batch), round after round
    rows = {(r["batch"], r["engine"]): r for r in result["results"]}
    assert rows[1, "lce_default"]["images_per_s"] == 2000.0 and rows[5, "lce_default"]["images_per_s"] == 3000.0
    assert rows[1, "lce_default"]["round_images_per_s"] == [1000.0, 2000.0, 700.0]
    ref = rows[1, result["reference_engine"]]
    assert ref["rounds"] == 3 and ref["images_per_s"] == max(ref["round_images_per_s"])
    assert ref["speedup_vs_best_lce_x"] == pytest.approx(ref["images_per_s"] / 2000.0)
    assert result["lce_interleaved"] and result["rounds"] == 3 and "from the LCE process" in result["notes"]
    assert result["lce"]["versions"] == {"larq_compute_engine": "x"} and "model_sha256" not in ref
    assert len(result["load_average_before"]) == 3 and len(result["load_average_after"]) == 3
    assert "load_average" not in result  # before and after only (one key held the after figure twice)
    assert ref["best_lce_engine"] == "lce_default" and "tfc_batch5_vs_best_lce_x" in result["summary"]
    ceiling = result["binary_mac_ceiling"]["gmac_per_s"]
    for row in result["results"]:
        assert row["fraction_of_ceiling"] == pytest.approx(row["binary_gmac_per_s"] / ceiling)
    rates = iter([1000.0] * 6)
    with pytest.raises(ValueError, match="the LCE process: LCE row tfc batch 1 timed another network"):
        bench_xnor(tmp_path / "y.json", ["tfc"], [1, 5], repeats=3, seed=2, check_images=16,
                   lce_timer=lambda f, b, r, n: lce(f, b, r, 3), lce_meta=meta, rounds=3)
    assert not (tmp_path / "y.json").exists()


@pytest.mark.parametrize("cpu, width, rate", [
    ({"avx512_vpopcntdq": True, "cpu_mhz": 2000.0}, 512, 1),
    ({"vendor": "AuthenticAMD", "cpu_family": 25, "popcnt": True, "avx2": True, "cpu_mhz": 2500.0}, 64, 4),
    ({"vendor": "GenuineIntel", "cpu_family": 6, "popcnt": True, "cpu_mhz": 3000.0}, 64, 1),
    ({"neon": True, "cpu_mhz": 1500.0}, 128, 2),
])
def test_binary_mac_ceiling_is_width_times_rate_times_clock(cpu: dict, width: int, rate: int) -> None:
    from hw_builds.xnor_bench import binary_mac_ceiling

    c = binary_mac_ceiling(cpu)
    assert (c["width_bits"], c["per_cycle"]) == (width, rate)
    assert c["gmac_per_s"] == pytest.approx(width * rate * cpu["cpu_mhz"] / 1e3)


def test_bench_net_file_for_the_larq_world(tmp_path: Path) -> None:
    """The file's arrays describe the network: a float forward written from the file format alone
    (larq_models/bench_lce.py's table) gives the XNOR reference's logits; sign(0) never occurs (biases end in .5)."""
    from hw_builds.xnor_bench import bench_net_arrays

    rng = np.random.default_rng(3)
    model = random_conv_model(rng, input_shape=(3, 12, 12), convs=[(16, 3, 1, False), (64, 3, 1, True),
                                                                     (8, 2, 1, False)], fc=[32])
    x = rng.integers(0, 256, size=(16, 3, 12, 12), dtype=np.uint8)
    want = XnorReference(model, backend="numpy").logits(x)
    net = bench_net_arrays(model, x, want)
    h = net["input_lut"][np.arange(3), net["check_x"].astype(np.int64)]  # (N, H, W, C)
    for i in range(int(net["n_layers"])):
        if net[f"layer{i}_flatten"]:
            h = h.reshape(len(h), 1, 1, -1)
        if net[f"layer{i}_binary_in"]:
            assert not np.any(h == 0)
            h = np.where(h > 0, 1.0, -1.0)
        k = net[f"layer{i}_kernel"].astype(np.float64)
        kh, kw, _, m = k.shape
        sh, sw = net[f"layer{i}_stride"]
        oh, ow = (h.shape[1] - kh) // sh + 1, (h.shape[2] - kw) // sw + 1
        d = np.zeros((len(h), oh, ow, m))
        for a in range(kh):
            for b in range(kw):
                d += h[:, a : a + sh * (oh - 1) + 1 : sh, b : b + sw * (ow - 1) + 1 : sw, :] @ k[a, b]
        if f"layer{i}_bias" in net:
            d = d + net[f"layer{i}_bias"]
        pk, pw, ps, pt = net[f"layer{i}_pool"]
        if pk:
            ph, pwid = (d.shape[1] - pk) // ps + 1, (d.shape[2] - pw) // pt + 1
            d = np.max([d[:, a : a + ps * (ph - 1) + 1 : ps, b : b + pt * (pwid - 1) + 1 : pt]
                        for a in range(pk) for b in range(pw)], axis=0)
        h = d
    acc = ((h.reshape(len(h), -1) + net["last_k"]) / 2).astype(np.float32)
    np.testing.assert_array_equal(acc * net["output_mul"] + net["output_add"], want)
    np.testing.assert_array_equal(net["check_logits"], want)
