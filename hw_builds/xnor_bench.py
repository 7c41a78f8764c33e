"""Speed of the XNOR-popcount reference against the same +1/-1 network in PyTorch fp32 and in Larq Compute Engine.

LCE runs in the Larq world (larq_models/bench_lce.py, its own environment): :func:`write_bench_net` gives it
each network as a file with bnnflow's logits on check images, and :func:`bench_xnor` takes LCE's rows turn
by turn from a timing process in that world (``lce_timer``, started by workflow/scripts/bench_xnor.py: LCE and
bnnflow timed back to back per (model, batch), round after round, under the same load), refusing rows of another
network (model_sha256). Every row also gets its binary GMAC/s as a
fraction of this core's ceiling (:func:`binary_mac_ceiling`: popcount width x issue rate x clock).

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
from collections.abc import Callable
from pathlib import Path

import numpy as np

from host.atomic import atomic_path, write_json_atomic
from host.xnor import XnorReference, available_backends
from host.xnor_format import XnorModel, build_manifest, manifest_sha256
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


def family_model(family: str, seed: int) -> tuple[XnorModel, tuple[int, ...]]:
    """The bench's random network of ``family`` for ``seed`` (the same in every rule) and its per-image input shape."""
    return _family_model(family, np.random.default_rng([seed, FAMILIES.index(family)]))


def bench_net_arrays(model: XnorModel, check_x: np.ndarray, check_logits: np.ndarray) -> dict[str, np.ndarray]:
    """The bench net of ``model`` for the Larq world (larq_models/bench_lce.py's file format), from its arrays.

    Raises ValueError for what the Larq twin cannot express: a multi-bit hidden activation or ternary weights
    (every hidden layer's output must be one sign, as in the w1a1 bench families).
    """
    layers = model.layers
    if any(la.weight_bits != 1 for la in layers) or any(la.act_bits != 1 for la in layers[1:]):
        raise ValueError("bench net: only w1a1 networks (CNV's 8-bit first layer allowed) have a Larq twin here")
    if model.is_conv:
        c, h, w = model.input_shape
        shape = (h, w, c)
        x_nhwc = check_x.reshape(-1, c, h, w).transpose(0, 2, 3, 1)
    else:
        shape, c = (1, 1, model.in_features), model.in_features
        x_nhwc = check_x.reshape(-1, 1, 1, model.in_features)
    out: dict[str, np.ndarray] = {"input_shape": np.array(shape, np.int64), "n_layers": np.array(len(layers))}
    thr0 = np.broadcast_to(model.input_thresholds, (c, model.input_thresholds.shape[1]))
    if layers[0].act_bits == 1:
        out["input_offset"] = (thr0[:, 0] - 0.5).astype(np.float32)  # pixel >= t  <=>  pixel - (t - 0.5) > 0
    else:
        codes = (np.arange(256)[None, :, None] >= thr0[:, None, :]).sum(-1)  # (C, 256)
        out["input_lut"] = (codes + layers[0].act_bias).astype(np.float32)
    in_shape = shape
    for i, la in enumerate(layers):
        w = la.weights_int().astype(np.float32)  # (M, K), FINN's rows
        if la.conv is not None:
            (kh, kw), ch = la.conv.kernel, la.conv.in_channels
            kernel = w.reshape(la.out_features, kh, kw, ch).transpose(1, 2, 3, 0)
            stride, flatten = la.conv.stride, False
        else:
            kernel, stride = w.T.reshape(1, 1, la.in_features, la.out_features), (1, 1)
            flatten = len(in_shape) == 3 and in_shape[0] * in_shape[1] > 1
        out[f"layer{i}_kernel"] = np.ascontiguousarray(kernel)
        out[f"layer{i}_stride"] = np.array(stride, np.int64)
        out[f"layer{i}_pool"] = np.array([*la.pool.kernel, *la.pool.stride] if la.pool else [0, 0, 0, 0], np.int64)
        out[f"layer{i}_binary_in"] = np.array(la.act_bits == 1)
        out[f"layer{i}_flatten"] = np.array(flatten)
        if la.thresholds is not None:
            t = np.broadcast_to(la.thresholds[:, 0], (la.out_features,)).astype(np.float64)
            t_dot = 2 * t - la.in_features if la.act_bits == 1 else t  # the threshold on d
            out[f"layer{i}_bias"] = (0.5 - t_dot).astype(np.float32)  # d >= t_dot  <=>  d + 0.5 - t_dot > 0
        in_shape = la.out_shape()
    out.update(last_k=np.array(layers[-1].in_features), last_binary=np.array(layers[-1].act_bits == 1),
               output_mul=model.output_mul.astype(np.float32), output_add=model.output_add.astype(np.float32),
               check_x=np.ascontiguousarray(x_nhwc, dtype=np.uint8), check_logits=check_logits.astype(np.float32))
    return out


def write_bench_net(family: str, seed: int, out_npz: str | Path, check_images: int = CHECK_IMAGES) -> dict:
    """Write the bench net of ``family`` / ``seed`` for larq_models/bench_lce.py: the network, ``check_images``
    random images and bnnflow's logits on them (numpy engine, the board's path). Returns the arrays written."""
    model, shape = family_model(family, seed)
    check_x = np.random.default_rng([seed, 1000 + FAMILIES.index(family)]).integers(
        0, 256, size=(check_images, *shape), dtype=np.uint8)
    arrays = bench_net_arrays(model, check_x, XnorReference(model, backend="numpy").logits(check_x))
    arrays.update(family=np.array(family), model_sha256=np.array(manifest_sha256(build_manifest(model))))
    with atomic_path(out_npz, keep_suffix=True) as tmp:
        np.savez(tmp, **arrays)
    return arrays


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
    """CPU model, vendor / family, flags that decide the popcount width, and the clock (from /proc/cpuinfo where it exists)."""
    info = {"machine": platform.machine(), "cpu_model": platform.processor() or "unknown", "avx512_vpopcntdq": False,
            "avx2": False, "popcnt": False, "vendor": "unknown", "cpu_family": None, "cpu_mhz": None}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        info["cpu_model"] = fields.get("model name", info["cpu_model"])
        flags = set(fields.get("flags", fields.get("Features", "")).split())
        info.update(avx512_vpopcntdq="avx512_vpopcntdq" in flags, avx2="avx2" in flags, popcnt="popcnt" in flags,
                    neon=bool({"asimd", "neon"} & flags), vendor=fields.get("vendor_id", "unknown"))
        if fields.get("cpu family", "").isdigit():
            info["cpu_family"] = int(fields["cpu family"])
        try:
            info["cpu_mhz"] = float(fields["cpu MHz"])
        except (KeyError, ValueError):
            pass
    info["logical_cpus"] = os.cpu_count()
    return info


# Popcount instruction (bits per instruction) and instructions per cycle of one core, by what the CPU reports.
# Source: Agner Fog's instruction tables (VPOPCNTQ zmm 1/cycle on Ice Lake; POPCNT r64 4/cycle on AMD Zen 1-4,
# 1/cycle on Intel Core); AArch64 NEON CNT on 128-bit vectors, 2/cycle (Cortex-A72 optimization guide).
def popcount_unit(cpu: dict) -> dict:
    """The widest popcount this CPU executes and its issue rate: {'instruction', 'width_bits', 'per_cycle', 'source'}."""
    if cpu.get("avx512_vpopcntdq"):
        return {"instruction": "VPOPCNTQ zmm (AVX-512 VPOPCNTDQ)", "width_bits": 512, "per_cycle": 1,
                "source": "Agner Fog, Ice Lake: 1 per cycle"}
    if cpu.get("neon"):
        return {"instruction": "NEON CNT (128-bit)", "width_bits": 128, "per_cycle": 2,
                "source": "Cortex-A72 software optimization guide: 2 per cycle"}
    amd_zen = cpu.get("vendor") == "AuthenticAMD" and (cpu.get("cpu_family") or 0) >= 0x17
    if cpu.get("popcnt") or amd_zen:
        rate = 4 if amd_zen else 1
        return {"instruction": "POPCNT r64 (no vector popcount: AVX2 has none)", "width_bits": 64, "per_cycle": rate,
                "source": f"Agner Fog, {'AMD Zen: 4' if amd_zen else 'Intel Core: 1'} per cycle"}
    return {"instruction": "none detected (table lookup)", "width_bits": 8, "per_cycle": 1, "source": "assumed"}


def binary_mac_ceiling(cpu: dict) -> dict:
    """This core's binary-MAC ceiling: popcount width x popcounts per cycle x clock, in GMAC/s (one bit = one MAC).

    The clock is /proc/cpuinfo's ``cpu MHz`` (the current, not the boost clock: a VM reports its nominal one);
    the XOR, the loads and the accumulation compete for the same cycles, so no kernel reaches it.
    """
    unit = popcount_unit(cpu)
    ghz = (cpu.get("cpu_mhz") or 0.0) / 1e3
    return {**unit, "clock_ghz": round(ghz, 3), "gmac_per_s": unit["width_bits"] * unit["per_cycle"] * ghz,
            "formula": "width_bits x per_cycle x clock_ghz (one core)"}


def _plan(conv: bool, engine: str, batch: int, repeats: int, numpy_conv_max_batch: int,
          rounds: int = 1) -> tuple[int, int, int]:
    """(images per timed call, repeats, warm-up calls) of one (engine, batch) in one round; the cuts keep the run short.

    MLPs: the numpy path at batch > 1 gets a tenth of the repeats. Conv nets at batch > 1: a third of
    the repeats, shared among the ``rounds`` (at least 3 a round), and one warm-up for every engine (the
    top-1 check already ran each one), and the numpy path at most ``numpy_conv_max_batch`` images per call.
    (larq_models/bench_lce.py's LceBench.plan cuts LCE's calls the same way.)
    """
    if not conv:
        return batch, (max(3, repeats // 10) if (engine == "xnor_numpy" and batch > 1) else repeats), 2
    if batch == 1:
        return 1, repeats, 2
    measured = min(batch, numpy_conv_max_batch) if engine == "xnor_numpy" else batch
    return measured, max(3, repeats // 3 // rounds), 1


def _lce_rows(got: list[dict], family: str, batch: int, want: str) -> list[dict]:
    """The LCE process's rows for (``family``, ``batch``), without their model_sha256. Raises ValueError when there
    is none, or when a row of ``family`` timed another network (its model_sha256 is not ``want``, this run's)."""
    mine = [r for r in got if r.get("model") == family]
    if not any(r.get("batch") == batch for r in mine):
        raise ValueError(f"bench_xnor: the LCE process gave no rows for {family} batch {batch}")
    for r in mine:
        if r.get("model_sha256") != want:
            raise ValueError(f"the LCE process: LCE row {family} batch {r['batch']} timed another network "
                             f"(model_sha256 {r.get('model_sha256')!r}, this run's is {want!r})")
    return [{k: v for k, v in r.items() if k != "model_sha256"} for r in mine if r.get("batch") == batch]


# An LCE turn of an interleaved run: (family, batch, repeats, rounds) -> LCE's rows for that (family, batch), one per kernel
# setting, in larq_models/bench_lce.py's layout (model_sha256 included). workflow/scripts/bench_xnor.py makes it
# from a `python -m larq_models bench-lce-serve` process in the Larq environment; this world never starts one.
LceTimer = Callable[[str, int, int, int], list[dict]]


def _best_of_rounds(per_round: list[list[dict]]) -> list[dict]:
    """Per (model, batch, engine), the round with the highest images/s, with every round's images/s beside it."""
    best: dict[tuple, dict] = {}
    seen: dict[tuple, list[float]] = {}
    for rows in per_round:
        for r in rows:
            key = (r["model"], r["batch"], r["engine"])
            seen.setdefault(key, []).append(r["images_per_s"])
            if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
                best[key] = r
    return [{**r, "rounds": len(seen[k]), "round_images_per_s": seen[k]} for k, r in best.items()]


def bench_xnor(out_json: str | Path, families: list[str], batch_sizes: list[int], repeats: int,
               threads: int = 1, seed: int = 0, numpy_conv_max_batch: int = CONV_NUMPY_MAX_BATCH,
               check_images: int = CHECK_IMAGES, lce_timer: LceTimer | None = None, lce_meta: dict | None = None, rounds: int = 1) -> dict:
    """Benchmark every (family, batch size, engine); write ``out_json``; return the results dict.

    ``check_images`` random images must get the same top-1 and logits from every engine before any timing.
    Larq Compute Engine's timings of the same networks join the table, and each row gets its speedup over the
    best LCE setting at the same (model, batch), from ``lce_timer`` (:data:`LceTimer`, with ``lce_meta``:
    settings, checked_images, versions, notes): each of ``rounds`` rounds takes every (model, batch) in turn and
    times LCE's settings, then bnnflow's engines, back to back, so both see the same load; each (model, batch,
    engine) keeps its best round (``round_images_per_s`` lists them all), and ``load_average_before`` / ``_after``
    say what the machine was doing. Without ``lce_timer`` only bnnflow and PyTorch are timed.

    larq_models/bench_lce.py checked LCE's logits against bnnflow's before timing. Every row gets its binary
    GMAC/s as a fraction of this CPU's ceiling (:func:`binary_mac_ceiling`). Raises ValueError for an unknown
    family, LCE rows of another network or missing ones, or ``rounds`` < 1.
    """
    import torch
    from tqdm import tqdm

    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"bench_xnor: unknown model families {unknown}; known: {', '.join(FAMILIES)}")
    if rounds < 1:
        raise ValueError(f"bench_xnor: rounds must be >= 1, got {rounds}")
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    engines = [f"xnor_{b}" for b in reversed(available_backends())] + ["torch_fp32"]
    nets = {f: family_model(f, seed) for f in families}
    want = {f: manifest_sha256(build_manifest(m)) for f, (m, _) in nets.items()}
    notes: list[str] = []
    jobs = [(f, b) for f in families for b in batch_sizes]
    cases = {}
    for family, batch in tqdm(jobs, desc="bench_xnor: build + check", unit="config"):
        model, shape = nets[family]
        x = rng.integers(0, 256, size=(batch, *shape), dtype=np.uint8)
        refs = {f"xnor_{b}": XnorReference(model, backend=b) for b in available_backends()}
        torch_fn = torch_pm1_conv_network(model) if model.is_conv else torch_pm1_network(model)
        _check_same_network(family, {**{n: r.logits for n, r in refs.items()}, "torch_fp32": torch_fn},
                            rng.integers(0, 256, size=(check_images, *shape), dtype=np.uint8))
        fns = {name: ref.predict for name, ref in refs.items()}
        fns["torch_fp32"] = lambda xb, f=torch_fn: np.argmax(f(xb), axis=1)
        cases[family, batch] = (model, x, fns)
        for name in engines:
            measured, _, _ = _plan(model.is_conv, name, batch, repeats, numpy_conv_max_batch)
            if measured != batch:
                notes.append(f"{family} batch {batch}: {name} timed on the first {measured} of the {batch} images "
                             f"per call (too slow for the default run); its images/s and speedup are at batch "
                             f"{measured}, compared with the other engines' at batch {batch}")
    per_round: list[list[dict]] = []
    with tqdm(total=rounds * len(jobs), desc="bench_xnor: timing" + (" (LCE, then bnnflow)" if lce_timer else ""),
              unit="config") as bar:
        for rnd in range(rounds):
            rows: list[dict] = []
            for family, batch in jobs:
                if lce_timer is not None:  # LCE's turn, then bnnflow's at once: the same load for both
                    rows += _lce_rows(lce_timer(family, batch, repeats, rounds), family, batch, want[family])
                model, x, fns = cases[family, batch]
                for name in engines:
                    measured, reps, warmup = _plan(model.is_conv, name, batch, repeats, numpy_conv_max_batch, rounds)
                    times = _time_calls(fns[name], x[:measured], reps, warmup=warmup)
                    p50 = float(np.median(times))
                    rows.append({
                        "model": family, "batch": batch, "measured_batch": measured, "engine": name, "repeats": reps,
                        "warmup_calls": warmup,
                        "latency_ms_p50": p50 * 1e3, "latency_ms_p99": float(np.percentile(times, 99)) * 1e3,
                        "images_per_s": measured / p50,
                    })
                bar.update()
            per_round.append(rows)
    rows = _best_of_rounds(per_round)
    if lce_meta is not None:
        lce_meta = dict(lce_meta)
        notes += lce_meta.pop("notes", [])
    cpu = cpu_info()
    ceiling = binary_mac_ceiling(cpu)
    best = "xnor_numba" if "xnor_numba" in engines else "xnor_numpy"
    summary: dict[str, float] = {}
    for row in rows:
        macs = binary_macs_per_image(nets[row["model"]][0])
        same = [r for r in rows if r["model"] == row["model"] and r["batch"] == row["batch"]]
        base = next(r for r in same if r["engine"] == "torch_fp32")
        row["binary_macs_per_image"] = macs
        row["binary_gmac_per_s"] = row["images_per_s"] * macs / 1e9
        row["fraction_of_ceiling"] = row["binary_gmac_per_s"] / ceiling["gmac_per_s"] if ceiling["gmac_per_s"] else None
        row["speedup_vs_torch_fp32_x"] = row["images_per_s"] / base["images_per_s"]
        lce = [r for r in same if r["engine"].startswith("lce_")]
        if lce:
            top = max(lce, key=lambda r: r["images_per_s"])
            row["speedup_vs_best_lce_x"] = row["images_per_s"] / top["images_per_s"]
            row["best_lce_engine"] = top["engine"]
        if row["engine"] == best:
            key = f"{row['model']}_batch{row['batch']}"
            summary[f"{key}_speedup_x"] = round(row["speedup_vs_torch_fp32_x"], 2)
            if lce:
                summary[f"{key}_vs_best_lce_x"] = round(row["speedup_vs_best_lce_x"], 2)
    load_after = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result = {
        "what": "XNOR-popcount reference vs the same +1/-1 network in PyTorch fp32"
                + (" and in Larq Compute Engine" if lce_meta else "") + ", random weights",
        "reference_engine": best,
        "threads": threads,
        "top1_checked_images": check_images,
        "rounds": rounds,
        "lce_interleaved": lce_timer is not None,
        "measured": ("per (model, batch, engine): median / p99 latency of one call on `measured_batch` images "
                     "over `repeats` timed calls after `warmup_calls`, in each of `rounds` rounds (a round times every "
                     "(model, batch) in turn: LCE's settings, then bnnflow's engines, back to back, where "
                     "`lce_interleaved`); the row is the round with the highest images/s (`round_images_per_s`: all); "
                     "images_per_s = measured_batch / median; speedup = images_per_s / torch_fp32's (or the best lce_* "
                     "engine's) at the same `batch`; fraction_of_ceiling = binary_gmac_per_s / "
                     "binary_mac_ceiling.gmac_per_s"),
        "notes": notes,
        "versions": _versions(),
        "cpu": cpu,
        "binary_mac_ceiling": ceiling,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "lce": lce_meta,
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
