"""Speed of the XNOR-popcount reference against the same +1/-1 network in PyTorch fp32, in one run.

Both sides compute the same network (random +1/-1 weights and thresholds, TFC or LFC widths):
the reference on packed bits, PyTorch as float32 matmuls of +1/-1 tensors with the thresholds
moved into the dot-product domain (acc >= t  <=>  d >= 2t - K, d = 2 acc - K). Their top-1 labels
are checked equal before anything is timed, so the benchmark cannot time two different things.

Timing: ``time.perf_counter`` around each call, after warm-up calls (numba compiles on the first);
median and p99 over the repeats; a binary MAC is one weight x activation product.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from host.atomic import write_json_atomic
from host.xnor import XnorReference, available_backends
from host.xnor_format import XnorModel
from host.xnor_random import MLP_WIDTHS, random_xnor_model


def binary_macs_per_image(model: XnorModel) -> int:
    """Multiply-accumulates of one image through the dense layers (the input thresholding not counted)."""
    return sum(layer.in_features * layer.out_features for layer in model.layers)


def torch_pm1_network(model: XnorModel):
    """The same network as float32 PyTorch ops on +1/-1 values; returns a callable on uint8 (N, K0)."""
    import torch

    in_thr = torch.tensor(model.input_thresholds[:, 0], dtype=torch.float32)
    weights = [torch.tensor(layer.weights_pm1(), dtype=torch.float32).T.contiguous() for layer in model.layers]
    dot_thr = [
        None if layer.thresholds is None
        else torch.tensor(2.0 * layer.thresholds[:, 0] - layer.in_features, dtype=torch.float32)
        for layer in model.layers
    ]
    k_last = float(model.layers[-1].in_features)
    mul = torch.tensor(model.output_mul)
    add = torch.tensor(model.output_add)
    one = torch.tensor(1.0)

    def forward(x_uint8: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(x_uint8).to(torch.float32)
            h = torch.where(x >= in_thr, one, -one)  # (N, K0) +-1
            for w, t in zip(weights, dot_thr):
                h = h @ w  # (N, M) +-1 dot products
                if t is not None:
                    h = torch.where(h >= t, one, -one)
            return (((h + k_last) * 0.5) * mul + add).numpy()

    return forward


def _time_calls(fn, x: np.ndarray, repeats: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn(x)
    times = np.empty(repeats)
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times[r] = time.perf_counter() - t0
    return times


def cpu_info() -> dict:
    """CPU model and whether it has AVX-512 VPOPCNTDQ (read from /proc/cpuinfo where it exists)."""
    info = {"machine": platform.machine(), "cpu_model": platform.processor() or "unknown", "avx512_vpopcntdq": False}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        info["avx512_vpopcntdq"] = "avx512_vpopcntdq" in text
    info["logical_cpus"] = os.cpu_count()
    return info


def bench_xnor(out_json: str | Path, families: list[str], batch_sizes: list[int], repeats: int,
               threads: int = 1, seed: int = 0) -> dict:
    """Benchmark every (family, batch size, engine); write ``out_json``; return the results dict."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    engines = [f"xnor_{b}" for b in reversed(available_backends())] + ["torch_fp32"]
    rows = []
    jobs = [(f, b) for f in families for b in batch_sizes]
    for family, batch in tqdm(jobs, desc="bench_xnor", unit="config"):
        model = random_xnor_model(MLP_WIDTHS[family], rng, input_shape=(1, 28, 28))
        x = rng.integers(0, 256, size=(batch, 784), dtype=np.uint8)
        fns = {f"xnor_{b}": XnorReference(model, backend=b).predict for b in available_backends()}
        torch_fn = torch_pm1_network(model)
        fns["torch_fp32"] = lambda xb, f=torch_fn: np.argmax(f(xb), axis=1)
        check = rng.integers(0, 256, size=(256, 784), dtype=np.uint8)
        labels = {name: fn(check) for name, fn in fns.items()}
        for name, pred in labels.items():
            if not np.array_equal(pred, labels["torch_fp32"]):
                raise AssertionError(f"{family}: {name} and torch_fp32 disagree on top-1; not the same network")
        macs = binary_macs_per_image(model)
        # fewer repeats for the slow numpy path at large batches, so the run stays short
        for name in engines:
            reps = max(3, repeats // 10) if (name == "xnor_numpy" and batch > 1) else repeats
            times = _time_calls(fns[name], x, reps, warmup=2)
            p50 = float(np.median(times))
            rows.append({
                "model": family, "batch": batch, "engine": name, "repeats": reps,
                "latency_ms_p50": p50 * 1e3, "latency_ms_p99": float(np.percentile(times, 99)) * 1e3,
                "images_per_s": batch / p50, "binary_gmac_per_s": batch * macs / p50 / 1e9,
                "binary_macs_per_image": macs,
            })
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and r["batch"] == row["batch"]
                    and r["engine"] == "torch_fp32")
        row["speedup_vs_torch_fp32_x"] = row["images_per_s"] / base["images_per_s"]
    best = "xnor_numba" if "xnor_numba" in engines else "xnor_numpy"
    summary = {
        f"{r['model']}_batch{r['batch']}_speedup_x": round(r["speedup_vs_torch_fp32_x"], 2)
        for r in rows if r["engine"] == best
    }
    result = {
        "what": "XNOR-popcount reference vs the same +1/-1 network in PyTorch fp32, random weights",
        "reference_engine": best,
        "threads": threads,
        "versions": _versions(),
        "cpu": cpu_info(),
        "summary": summary,
        "results": rows,
    }
    write_json_atomic(out_json, result)
    return result


def _versions() -> dict:
    import torch

    v = {"numpy": np.__version__, "torch": torch.__version__}
    try:
        import numba

        v["numba"] = numba.__version__
    except ImportError:
        v["numba"] = None
    return v
