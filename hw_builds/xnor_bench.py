"""Speed of the XNOR-popcount reference against the same +1/-1 network in PyTorch fp32, in one run.

Both sides compute the same network (random +1/-1 weights and thresholds, TFC/LFC widths or the
CNV conv net): the reference on packed bits, PyTorch as float32 matmuls / conv2d of +1/-1 tensors
with the thresholds moved into the dot-product domain (acc >= t  <=>  d >= 2t - K, d = 2 acc - K).
Their top-1 labels and logits are checked equal before anything is timed, so the benchmark
cannot time two different things.

Timing: ``time.perf_counter`` around each call, after warm-up calls (numba compiles on the first);
median and p99 over the repeats; a binary MAC is one weight x activation product.

CNV costs ~60M MACs per image (~1000x TFC), so its large batches get fewer repeats and the
numpy-only path (~75 images/s here, ~13 s per 1000-image call) is timed on a smaller batch; each
row says what was measured (``repeats``, ``measured_batch``) and ``notes`` says why.
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
from host.xnor_random import MLP_WIDTHS, random_conv_model, random_xnor_model

CONV_FAMILIES = ("cnv",)
FAMILIES = (*MLP_WIDTHS, *CONV_FAMILIES)
# Largest batch the numpy-only path is timed at on a conv net (its images/s is flat in the batch size
# from ~10 images on, so 100 images stand for 1000 at a tenth of the time).
CONV_NUMPY_MAX_BATCH = 100
CHECK_IMAGES = 256  # images whose top-1 must agree between every engine before timing


def binary_macs_per_image(model: XnorModel) -> int:
    """Multiply-accumulates of one image: sum over layers of output pixels * K * M (1 pixel for a
    dense layer; a conv layer's pixels before its pooling). The input thresholding is not counted;
    CNV's first layer (8-bit input codes x +1/-1 weights) is, one MAC per product like the rest."""
    return sum((int(np.prod(layer.conv.out_dim)) if layer.conv is not None else 1)
               * layer.in_features * layer.out_features for layer in model.layers)


def torch_pm1_network(model: XnorModel):
    """The same MLP as float32 PyTorch ops on +1/-1 values; returns a callable on uint8 (N, K0)."""
    import torch

    in_thr = torch.tensor(model.input_thresholds[:, 0], dtype=torch.float32)
    weights = [torch.tensor(layer.weights_int(), dtype=torch.float32).T.contiguous() for layer in model.layers]
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


def torch_pm1_conv_network(model: XnorModel):
    """The same conv net (CNV) as float32 PyTorch ops; returns a callable on uint8 (N, C, H, W) -> logits.

    Written from the format's definition, not from host/xnor.py: input values from the pixel
    thresholds (+-1 for a 1-bit input, code + act_bias for a multi-bit one), conv2d with the
    weight rows k = (kh*KW + kw)*C + c reshaped to (M, KH, KW, C) and permuted to (M, C, KH, KW),
    activations from the thresholds in the dot-product domain (a 1-bit layer's accumulator is
    (d + K)/2), max_pool2d of the activations, NHWC flattening before the first dense layer.
    Every intermediate is an integer below 2**24, so float32 is exact.
    """
    import torch
    import torch.nn.functional as F

    layers = model.layers
    c = int(model.input_shape[0])
    thr0 = torch.as_tensor(model.input_thresholds, dtype=torch.int64)  # (C or 1, T)
    codes0 = (torch.arange(256)[None, :, None] >= thr0[:, None, :]).sum(-1)  # (C or 1, 256) input codes
    vals0 = 2 * codes0 - 1 if layers[0].act_bits == 1 else codes0 + layers[0].act_bias
    lut = vals0.to(torch.float32).expand(c, 256).reshape(-1).contiguous()  # value of (channel, pixel)
    offsets = (torch.arange(c) * 256).view(1, c, 1, 1)

    weights, dot_thr = [], []
    for i, layer in enumerate(layers):
        w = torch.tensor(layer.weights_int(), dtype=torch.float32)  # (M, K)
        if layer.conv is not None:
            (kh, kw), ch = layer.conv.kernel, layer.conv.in_channels
            w = w.reshape(layer.out_features, kh, kw, ch).permute(0, 3, 1, 2).contiguous()
        else:
            w = w.T.contiguous()
        weights.append(w)
        if layer.thresholds is None:
            dot_thr.append(None)
            continue
        t = torch.tensor(layer.thresholds, dtype=torch.float32)  # (M or 1, T) on the accumulator
        if layer.act_bits == 1:
            t = 2.0 * t - layer.in_features  # acc >= t  <=>  d >= 2t - K
        if layers[i + 1].act_bits == 1:
            t = t[:, :1]  # a 1-bit activation has one threshold
        # (1, M or 1, 1, 1, T) against a (N, M, OH, OW, 1) conv output, (1, M or 1, T) against (N, M, 1)
        dot_thr.append(t.view(1, t.shape[0], 1, 1, t.shape[1]) if layer.conv is not None else t.view(1, *t.shape))
    last = layers[-1]
    k_last = float(last.in_features)
    mul, add = torch.tensor(model.output_mul), torch.tensor(model.output_add)
    one = torch.tensor(1.0)

    def forward(x_uint8: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(x_uint8)).reshape(-1, *model.input_shape)
            h = torch.take(lut, x.to(torch.int64) + offsets)  # (N, C, H, W) input values
            for i, (layer, w, t) in enumerate(zip(layers, weights, dot_thr)):
                if layer.conv is not None:
                    d = F.conv2d(h, w, stride=layer.conv.stride)  # (N, M, OH, OW) dot products
                else:
                    if h.dim() == 4:
                        h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # NHWC flattening
                    d = h @ w  # (N, M)
                if t is None:
                    break
                nxt = layers[i + 1]
                if nxt.act_bits == 1:
                    h = torch.where(d >= t[..., 0], one, -one)
                else:
                    h = (d.unsqueeze(-1) >= t).sum(-1).to(torch.float32) + nxt.act_bias
                if layer.pool is not None:
                    h = F.max_pool2d(h, layer.pool.kernel, layer.pool.stride)  # monotone in the code
            acc = (d + k_last) * 0.5 if last.act_bits == 1 else d
            return (acc * mul + add).numpy()

    return forward


def _family_model(family: str, rng: np.random.Generator) -> tuple[XnorModel, tuple[int, ...]]:
    """The random network of ``family`` and the per-image shape of its raw uint8 input."""
    if family in MLP_WIDTHS:
        return random_xnor_model(MLP_WIDTHS[family], rng, input_shape=(1, 28, 28)), (784,)
    if family == "cnv":
        model = random_conv_model(rng)  # 3x32x32 8-bit input, convs 64-64-128-128-256-256, dense 512-512-10
        return model, tuple(model.input_shape)
    raise ValueError(f"bench_xnor: unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def _check_same_network(family: str, logits_fns: dict, check: np.ndarray) -> None:
    """Raise unless every engine gives torch_fp32's top-1 and logits on ``check``.

    Logits, not only top-1: with random weights the largest ``output_mul`` decides almost every
    label (seed 0: class 7 for 254-256 of 256 images in tfc, lfc and cnv), so equal labels alone
    would let a different network through. The logits are equal to the last bit: every
    accumulator is an integer below 2**24 (exact in float32) and the Mul/Add is the same op.
    """
    logits = {name: fn(check) for name, fn in logits_fns.items()}
    base = logits["torch_fp32"]
    for name, out in logits.items():
        bad = int(np.count_nonzero(np.argmax(out, axis=1) != np.argmax(base, axis=1)))
        if bad or not np.array_equal(out, base):
            raise AssertionError(
                f"bench_xnor {family}: {name} and torch_fp32 disagree on top-1 for {bad} of {len(check)} images "
                f"(logits differ by up to {float(np.max(np.abs(out - base))):g}); they are not the same network, "
                "nothing timed")


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


def _plan(conv: bool, engine: str, batch: int, repeats: int, numpy_conv_max_batch: int) -> tuple[int, int, int]:
    """(images per timed call, repeats, warm-up calls) of one (engine, batch); the cuts keep the run short.

    MLPs: the numpy path at batch > 1 gets a tenth of the repeats. Conv nets at batch > 1: a third of
    the repeats and one warm-up for every engine (the top-1 check already ran each one),
    and the numpy path at most ``numpy_conv_max_batch`` images per call.
    """
    if not conv:
        return batch, (max(3, repeats // 10) if (engine == "xnor_numpy" and batch > 1) else repeats), 2
    if batch == 1:
        return 1, repeats, 2
    measured = min(batch, numpy_conv_max_batch) if engine == "xnor_numpy" else batch
    return measured, max(3, repeats // 3), 1


def bench_xnor(out_json: str | Path, families: list[str], batch_sizes: list[int], repeats: int,
               threads: int = 1, seed: int = 0, numpy_conv_max_batch: int = CONV_NUMPY_MAX_BATCH,
               check_images: int = CHECK_IMAGES) -> dict:
    """Benchmark every (family, batch size, engine); write ``out_json``; return the results dict.

    ``check_images`` random images must get the same top-1 and logits from every engine before any timing.
    """
    import torch
    from tqdm import tqdm

    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"bench_xnor: unknown model families {unknown}; known: {', '.join(FAMILIES)}")
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    engines = [f"xnor_{b}" for b in reversed(available_backends())] + ["torch_fp32"]
    rows, notes = [], []
    jobs = [(f, b) for f in families for b in batch_sizes]
    for family, batch in tqdm(jobs, desc="bench_xnor", unit="config"):
        model, shape = _family_model(family, rng)
        x = rng.integers(0, 256, size=(batch, *shape), dtype=np.uint8)
        refs = {f"xnor_{b}": XnorReference(model, backend=b) for b in available_backends()}
        torch_fn = torch_pm1_conv_network(model) if model.is_conv else torch_pm1_network(model)
        _check_same_network(family, {**{n: r.logits for n, r in refs.items()}, "torch_fp32": torch_fn},
                            rng.integers(0, 256, size=(check_images, *shape), dtype=np.uint8))
        fns = {name: ref.predict for name, ref in refs.items()}
        fns["torch_fp32"] = lambda xb, f=torch_fn: np.argmax(f(xb), axis=1)
        macs = binary_macs_per_image(model)
        for name in engines:
            measured, reps, warmup = _plan(model.is_conv, name, batch, repeats, numpy_conv_max_batch)
            if measured != batch:
                notes.append(f"{family} batch {batch}: {name} timed on the first {measured} of the {batch} images "
                             f"per call (too slow for the default run); its images/s and speedup are at batch "
                             f"{measured}, compared with the other engines' at batch {batch}")
            times = _time_calls(fns[name], x[:measured], reps, warmup=warmup)
            p50 = float(np.median(times))
            rows.append({
                "model": family, "batch": batch, "measured_batch": measured, "engine": name, "repeats": reps,
                "warmup_calls": warmup,
                "latency_ms_p50": p50 * 1e3, "latency_ms_p99": float(np.percentile(times, 99)) * 1e3,
                "images_per_s": measured / p50, "binary_gmac_per_s": measured * macs / p50 / 1e9,
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
        "top1_checked_images": check_images,
        "measured": ("per (model, batch, engine): median / p99 latency of one call on `measured_batch` images "
                     "over `repeats` timed calls after `warmup_calls`; images_per_s = measured_batch / median; "
                     "speedup = images_per_s / torch_fp32's at the same `batch`"),
        "notes": notes,
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
