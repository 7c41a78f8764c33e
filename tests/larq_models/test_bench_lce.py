"""LCE as the XNOR benchmark's peer (larq_models/bench_lce.py): the bench nets the main world writes become Larq
models that LCE's converter turns into binary ops and LCE's interpreter runs to bnnflow's logits, bit for bit.

The bench nets are made here as the main world makes them (hw_builds.xnor_bench.bench_net_arrays on random
models of host.xnor_random; both numpy only), with the logits of the XNOR reference's numpy engine: a
differential test of LCE against bnnflow on random MLPs and CNV-like conv nets. Timing figures are not asserted.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from host.xnor import XnorReference
from host.xnor_random import random_conv_model, random_xnor_model
from hw_builds.xnor_bench import bench_net_arrays
from larq_models.bench_lce import (KERNEL_SETTINGS, BenchNetError, BenchRequestError, LceBench,
                                   build_larq_model, check_same_network, convert, load_bench_net, serve)

pytestmark = pytest.mark.larq_env


def _write_net(tmp_path: Path, name: str, model, n: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape) if model.is_conv else (model.in_features,)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    arrays = bench_net_arrays(model, x, XnorReference(model, backend="numpy").logits(x))
    arrays.update(family=np.array(name), model_sha256=np.array("sha-" + name))
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def _models(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        # one input threshold and one per layer for all neurons (broadcast); the bench test has them per neuron
        "mlp": random_xnor_model([100, 70, 130, 10], rng, per_channel=False),
        # 8-bit first layer (float conv in LCE), pooling, a 3x3x8 map flattened NHWC into the dense layers
        "conv8": random_conv_model(rng, input_shape=(3, 12, 12), convs=[(16, 3, 1, False), (64, 3, 1, True),
                                                                           (8, 2, 1, False)], fc=[32]),
        # 1-bit input (an XNOR first layer)
        "conv1": random_conv_model(rng, input_shape=(3, 10, 10), convs=[(64, 3, 1, True), (32, 3, 1, False)],
                                   fc=[16], in_bits=1),
    }


@pytest.mark.parametrize("name", ["mlp", "conv8", "conv1"])
def test_lce_computes_bnnflows_network_under_every_kernel_setting(tmp_path: Path, name: str) -> None:
    net = load_bench_net(_write_net(tmp_path, name, _models(3)[name]))
    fbs = {4: convert(build_larq_model(net, 4))}  # 24 check images in 6 calls of 4
    assert b"LceBconv2d" in fbs[4]  # the binary kernel, not a float convolution
    check_same_network(net, fbs, list(KERNEL_SETTINGS))  # raises on any differing logit


def test_a_different_network_is_refused_before_timing(tmp_path: Path) -> None:
    path = _write_net(tmp_path, "mlp", _models(4)["mlp"])
    net = load_bench_net(path)
    net["layer1_bias"] = net["layer1_bias"] + 2.0  # every hidden threshold of layer 1 moved by one
    fb = convert(build_larq_model(net, 1))
    with pytest.raises(AssertionError, match="mlp: LCE .* logits differ"):
        check_same_network(net, {1: fb}, ["default"])


def test_bad_bench_net_file_is_refused_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, family=np.array("x"))
    with pytest.raises(BenchNetError, match="bad.npz: bench net lacks .*model_sha256"):
        load_bench_net(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(BenchNetError, match="junk.npz: not a readable"):
        load_bench_net(junk)


def test_serve_times_one_net_and_batch_per_request(tmp_path: Path) -> None:
    """The interleaved benchmark's protocol (workflow/scripts/bench_xnor.py asks, one JSON line a request): a ready
    line with the versions, then LCE's rows for exactly the (net, batch) asked, every setting; a request for a batch
    that was not converted gets an error line and BenchRequestError."""
    path = _write_net(tmp_path, "mlp", random_xnor_model([100, 70, 10], np.random.default_rng(6)), n=8)
    bench = LceBench([path], [1, 3], settings=["default", "indirect_bgemm"], progress=False)
    requests = io.StringIO('{"model": "mlp", "batch": 3, "repeats": 4, "rounds": 2}\n\n'
                           '{"model": "mlp", "batch": 1, "repeats": 3}\n')
    replies = io.StringIO()
    assert serve(bench, requests, replies) == 2
    lines = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert lines[0]["ready"]["versions"]["larq_compute_engine"] == "0.16.0"
    assert lines[0]["ready"]["checked_images"] == {"mlp": 8}
    first, second = lines[1]["rows"], lines[2]["rows"]
    assert [(r["batch"], r["engine"], r["repeats"]) for r in first] == [(3, "lce_default", 4), (3, "lce_indirect_bgemm", 4)]
    assert [(r["batch"], r["repeats"]) for r in second] == [(1, 3), (1, 3)]
    assert all(r["model"] == "mlp" and r["model_sha256"] == "sha-mlp" for r in first + second)
    for row in first + second:
        assert row["measured_batch"] == row["batch"]
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["latency_ms_p50"] * 1e3)
    replies = io.StringIO()
    with pytest.raises(BenchRequestError, match="no converted net for mlp at batch 7"):
        serve(bench, io.StringIO('{"model": "mlp", "batch": 7, "repeats": 3}\n'), replies)
    assert "error" in json.loads(replies.getvalue().splitlines()[-1])
