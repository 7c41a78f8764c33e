"""Larq Compute Engine (LCE) as the XNOR reference's peer: the same random networks, built in Larq, converted
with LCE's converter and timed with LCE's interpreter at one thread under each of its binary kernel settings.

Input: one *bench net* ``.npz`` per network, written by the main world (hw_builds/xnor_bench.py,
``write_bench_net``); this package may not import it, so the file is the contract:

| key | meaning |
| --- | --- |
| ``family``, ``model_sha256`` | name (tfc, lfc, cnv) and the XNOR model's manifest hash |
| ``input_shape`` | int (3,): one image as LCE gets it, NHWC (H, W, C); an MLP is (1, 1, K0) |
| ``input_offset`` | float32 (C,): 1-bit input, value sign(pixel - offset) (offset = threshold - 0.5) |
| ``input_lut`` | float32 (C, 256): multi-bit input (CNV's 8-bit code), value of pixel p on channel c |
| ``n_layers`` | L |
| ``layer{i}_kernel`` | float32 (KH, KW, C, M) of +1/-1: Keras' QuantConv2D layout (a dense layer is 1x1) |
| ``layer{i}_stride``, ``layer{i}_pool`` | int (2,), int (4,) (kh, kw, sh, sw; zeros = no pooling) |
| ``layer{i}_binary_in`` | the layer's input is sign()ed (LCE's binary kernel); else float (CNV's first layer) |
| ``layer{i}_flatten`` | the (H, W, C) map is flattened NHWC to (1, 1, H*W*C) before this (dense) layer |
| ``layer{i}_bias`` | float32 (M,), hidden layers: next input = sign(d + bias), d the layer's dot product |
| ``last_k``, ``last_binary`` | accumulator of the last layer: (d + K) / 2 for a binary input, else d |
| ``output_mul``, ``output_add`` | float32 (M_last,): logits = accumulator * mul + add (float32, two roundings) |
| ``check_x``, ``check_logits`` | uint8 (N, H, W, C) images and bnnflow's float32 (N, M_last) logits on them |

Each layer is a Larq ``QuantConv2D`` (ste_sign kernel quantizer; ste_sign input quantizer where the input is
binary, so LCE's converter makes it an ``LceBconv2d`` with the bias and the next sign fused into output
thresholds); max pooling sits between the bias and the next sign (sign is monotone, so pooling before or after
the sign is the same). LCE's output is the last layer's +-1 dot product d (an integer in float32, exact); the
logits are computed from it in numpy float32 as bnnflow does, and must equal ``check_logits`` to the last bit
for every kernel setting before anything is timed.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import IO

import numpy as np


# LCE 0.16's interpreter switches for its binary convolution (LceBconv2d); "default" is its optimized kernel.
KERNEL_SETTINGS = {
    "default": {},
    "reference": {"use_reference_bconv": True},
    "indirect_bgemm": {"use_indirect_bgemm": True},
    "indirect_bgemm_xnnpack": {"use_indirect_bgemm": True, "use_xnnpack": True},
}
SLOW_SETTING_MAX_BATCH = 100  # the reference kernel on a conv net at a large batch is timed on this many images


class BenchNetError(ValueError):
    """A bench net file that is missing keys or inconsistent."""


class BenchRequestError(ValueError):
    """A timing request :func:`serve` cannot answer (not JSON, missing keys, a net or batch it has not converted)."""


def load_bench_net(path: str | Path) -> dict:
    """The arrays of a bench net ``.npz`` (see the module docstring) as a dict; BenchNetError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            net = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise BenchNetError(f"{path}: not a readable bench net .npz ({err})") from err
    need = ["family", "model_sha256", "input_shape", "n_layers", "last_k", "last_binary", "output_mul", "output_add",
            "check_x", "check_logits"]
    missing = [k for k in need if k not in net]
    n = int(net["n_layers"]) if "n_layers" in net else 0
    missing += [f"layer{i}_{s}" for i in range(n) for s in ("kernel", "stride", "pool", "binary_in", "flatten")
                if f"layer{i}_{s}" not in net]
    if ("input_offset" in net) == ("input_lut" in net):
        missing.append("exactly one of input_offset / input_lut")
    if missing:
        raise BenchNetError(f"{path}: bench net lacks {', '.join(missing)}")
    net["path"] = str(path)
    return net


def _input_layer(net: dict):
    """A Keras layer mapping raw pixels (float32 NHWC) to the first layer's input values."""
    import tensorflow as tf

    if "input_offset" in net:
        offset = tf.constant(net["input_offset"].astype(np.float32))
        return tf.keras.layers.Lambda(lambda x: x - offset, name="input_threshold")
    lut = net["input_lut"].astype(np.float32)  # (C, 256)
    flat = tf.constant(lut.reshape(-1))
    chan = tf.constant(np.arange(lut.shape[0], dtype=np.int32) * 256)
    return tf.keras.layers.Lambda(lambda x: tf.gather(flat, tf.cast(x, tf.int32) + chan), name="input_code")


def build_larq_model(net: dict, batch: int):
    """The bench net as a Keras / Larq model with a fixed batch size: (batch, H, W, C) pixels -> (batch, M_last) d."""
    import larq as lq
    import tensorflow as tf

    inp = tf.keras.Input(shape=tuple(int(v) for v in net["input_shape"]), batch_size=batch, dtype=tf.float32)
    h = _input_layer(net)(inp)
    n = int(net["n_layers"])
    for i in range(n):
        kernel = net[f"layer{i}_kernel"].astype(np.float32)
        bias = net.get(f"layer{i}_bias")
        if bool(net[f"layer{i}_flatten"]):
            h = tf.keras.layers.Reshape((1, 1, -1))(h)
        conv = lq.layers.QuantConv2D(
            kernel.shape[-1], kernel.shape[:2], strides=tuple(int(s) for s in net[f"layer{i}_stride"]),
            padding="valid", input_quantizer="ste_sign" if bool(net[f"layer{i}_binary_in"]) else None,
            kernel_quantizer="ste_sign", kernel_constraint=None, use_bias=bias is not None, name=f"layer{i}")
        h = conv(h)
        conv.set_weights([kernel] + ([bias.astype(np.float32)] if bias is not None else []))
        pool = [int(v) for v in net[f"layer{i}_pool"]]
        if any(pool):
            h = tf.keras.layers.MaxPool2D(pool[:2], strides=pool[2:], padding="valid")(h)
    out = tf.keras.layers.Reshape((int(net["output_mul"].shape[0]),))(h)
    return tf.keras.Model(inp, out)


def logits_of(net: dict, d: np.ndarray) -> np.ndarray:
    """float32 (N, M_last) logits from LCE's last-layer dot products d, as bnnflow computes them."""
    d = np.asarray(d, dtype=np.float32)
    acc = ((d + np.float32(net["last_k"])) * np.float32(0.5)) if bool(net["last_binary"]) else d
    return acc.astype(np.float32) * net["output_mul"].astype(np.float32) + net["output_add"].astype(np.float32)


def convert(model) -> bytes:
    """LCE's converter: the Keras model -> a TFLite flatbuffer with LCE's binary ops."""
    from larq_compute_engine import convert_keras_model

    return convert_keras_model(model)


def interpreter(flatbuffer: bytes, setting: str):
    """LCE's interpreter at one thread under ``setting`` (a key of KERNEL_SETTINGS)."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(flatbuffer, num_threads=1, **KERNEL_SETTINGS[setting])


def _run(interp, x: np.ndarray) -> np.ndarray:
    """One interpreter call on a whole (batch, H, W, C) float32 block (the lite wrapper, no per-image loop)."""
    return interp.interpreter.predict([x])[0]


def check_same_network(net: dict, fb_by_batch: dict[int, bytes], settings: list[str]) -> None:
    """Raise AssertionError unless every setting's logits equal bnnflow's ``check_logits`` bit for bit.

    The check images run through the batch-1 and the largest-batch conversion (tiled to its batch size).
    """
    x = net["check_x"].astype(np.float32)
    want = net["check_logits"]
    for batch, fb in fb_by_batch.items():
        for setting in settings:
            interp = interpreter(fb, setting)
            d = np.concatenate([_run(interp, _tile(x[lo : lo + batch], batch))[: len(x[lo : lo + batch])]
                                for lo in range(0, len(x), batch)])
            got = logits_of(net, d)
            if not np.array_equal(got, want):
                bad = int(np.count_nonzero(np.any(got != want, axis=1)))
                raise AssertionError(
                    f"bench_lce {net['family']}: LCE ({setting}, batch {batch}) and bnnflow's logits differ on {bad} "
                    f"of {len(x)} images (by up to {float(np.max(np.abs(got - want))):g}); not the same network, "
                    "nothing timed")


def _tile(x: np.ndarray, batch: int) -> np.ndarray:
    """``x`` repeated to exactly ``batch`` images (the converted model's fixed batch size)."""
    reps = -(-batch // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:batch])


def _time_calls(fn, x: np.ndarray, repeats: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn(x)
    times = np.empty(repeats)
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times[r] = time.perf_counter() - t0
    return times


class LceBench:
    """The bench nets converted and checked once, then timed on request (:meth:`time`), one (net, batch) at a time.

    Building it loads every net, converts it for each batch size, checks that LCE's converter made an
    ``LceBconv2d`` op and that every kernel setting gives bnnflow's logits bit for bit (else AssertionError:
    nothing is timed). :func:`serve` lets the main world's benchmark ask for one row at a time, so that LCE
    and bnnflow take turns under the same load.
    """

    def __init__(self, net_paths: list[str | Path], batch_sizes: list[int], settings: list[str] | None = None,
                 slow_max_batch: int = SLOW_SETTING_MAX_BATCH, progress: bool = True):
        import tensorflow as tf
        from tqdm import tqdm

        logging.getLogger("larq").setLevel(logging.ERROR)  # "binary weight quantizer without kernel_constraint"
        self.settings = list(settings or KERNEL_SETTINGS)
        unknown = [s for s in self.settings if s not in KERNEL_SETTINGS]
        if unknown:
            raise ValueError(f"bench_lce: unknown kernel settings {unknown}; known: {', '.join(KERNEL_SETTINGS)}")
        self.batch_sizes = sorted(set(batch_sizes))
        self.nets = {}
        self.notes: list[str] = []
        # (family, batch, setting) -> (flatbuffer, measured batch); an interpreter is made per request (a conv net's
        # activations at batch 1000 are hundreds of MB per interpreter)
        self._fb: dict[tuple[str, int, str], tuple[bytes, int]] = {}
        self._x: dict[tuple[str, int], np.ndarray] = {}
        rng = np.random.default_rng(0)
        for path in tqdm(net_paths, desc="bench_lce: convert + check", unit="net", disable=not progress):
            net = load_bench_net(path)
            family = str(net["family"])
            self.nets[family] = net
            conv = int(net["input_shape"][0]) > 1
            fbs = {b: convert(build_larq_model(net, b)) for b in self.batch_sizes}
            binary_layers = sum(bool(net[f"layer{i}_binary_in"]) for i in range(int(net["n_layers"])))
            if binary_layers and b"LceBconv2d" not in fbs[min(fbs)]:
                raise AssertionError(f"bench_lce {family}: LCE's converter made no LceBconv2d (binary kernel) op; "
                                     "it would time float convolutions")
            check_same_network(net, {b: fbs[b] for b in (min(fbs), max(fbs))}, self.settings)
            for batch in self.batch_sizes:
                self._x[family, batch] = rng.integers(0, 256, size=(batch, *net["input_shape"])).astype(np.float32)
                for setting in self.settings:
                    measured = batch
                    if conv and batch > 1 and setting == "reference" and batch > slow_max_batch:
                        measured = slow_max_batch
                        self.notes.append(f"{family} batch {batch}: lce_reference timed on {measured}-image calls (a "
                                          f"model converted for batch {measured}); its images/s is at batch {measured}")
                    fb = fbs[batch] if measured == batch else convert(build_larq_model(net, measured))
                    self._fb[family, batch, setting] = (fb, measured)
            tf.keras.backend.clear_session()

    def plan(self, family: str, batch: int, repeats: int, rounds: int = 1) -> tuple[int, int]:
        """(timed calls, warm-up calls) of one row in one of ``rounds`` rounds: conv nets at a batch > 1 get a third
        of ``repeats`` shared among the rounds (at least 3 a round) and one warm-up (as hw_builds/xnor_bench.py's
        plan for bnnflow's engines)."""
        conv = int(self.nets[family]["input_shape"][0]) > 1
        return (max(3, repeats // 3 // rounds), 1) if (conv and batch > 1) else (repeats, 2)

    def time(self, family: str, batch: int, repeats: int, rounds: int = 1) -> list[dict]:
        """One row per kernel setting for (``family``, ``batch``): latency_ms_p50 / p99 of one interpreter call on
        ``measured_batch`` images over the :meth:`plan`'s timed calls, images_per_s = measured_batch / p50.
        A fresh interpreter per setting, warmed up by the plan's warm-up calls. Raises KeyError for a (family,
        batch) that was not converted."""
        if (family, batch) not in self._x:
            raise KeyError(f"bench_lce: no converted net for {family} at batch {batch} "
                           f"(nets: {sorted(self.nets)}, batch sizes: {self.batch_sizes})")
        reps, warmup = self.plan(family, batch, repeats, rounds)
        rows = []
        for setting in self.settings:
            fb, measured = self._fb[family, batch, setting]
            interp = interpreter(fb, setting)
            times = _time_calls(lambda xb, it=interp: _run(it, xb), self._x[family, batch][:measured], reps, warmup)
            p50 = float(np.median(times))
            rows.append({"model": family, "batch": batch, "measured_batch": measured, "engine": f"lce_{setting}",
                         "repeats": reps, "warmup_calls": warmup, "latency_ms_p50": p50 * 1e3,
                         "latency_ms_p99": float(np.percentile(times, 99)) * 1e3,
                         "images_per_s": measured / p50, "model_sha256": str(self.nets[family]["model_sha256"])})
        return rows

    def meta(self) -> dict:
        """What a result file says besides its rows: settings, checked images per net, versions, notes."""
        import larq_compute_engine
        import tensorflow as tf

        return {"settings": {s: KERNEL_SETTINGS[s] for s in self.settings},
                "checked_images": {f: int(len(net["check_x"])) for f, net in self.nets.items()},
                "versions": {"larq_compute_engine": larq_compute_engine.__version__, "tensorflow": tf.__version__,
                             "numpy": np.__version__, "python": platform.python_version()},
                "notes": list(self.notes)}


def serve(bench: LceBench, requests: IO[str], replies: IO[str]) -> int:
    """Answer timing requests, one JSON object a line, until ``requests`` ends; returns the number answered.

    First writes ``{"ready": meta}`` (:meth:`LceBench.meta`). Each request ``{"model": family, "batch": B,
    "repeats": R, "rounds": N}`` (rounds optional, 1) gets ``{"rows": [...]}`` (:meth:`LceBench.time`); a request it cannot answer (not JSON, an
    unknown net or batch) gets ``{"error": "..."}``, then BenchRequestError is raised. Every reply is flushed at once: the
    main world's benchmark (workflow/scripts/bench_xnor.py) times bnnflow's turn as soon as LCE's is over.
    """
    def reply(obj: dict) -> None:
        replies.write(json.dumps(obj) + "\n")
        replies.flush()

    reply({"ready": bench.meta()})
    answered = 0
    for line in requests:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            rows = bench.time(str(req["model"]), int(req["batch"]), int(req["repeats"]), int(req.get("rounds", 1)))
        except (ValueError, KeyError, TypeError) as err:
            message = f"bench_lce serve: request {line.strip()!r}: {err}"
            reply({"error": message})
            raise BenchRequestError(message) from err
        reply({"rows": rows})
        answered += 1
    return answered
