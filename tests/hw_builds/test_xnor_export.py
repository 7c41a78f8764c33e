"""Binary weight export from FINN and the four-way verification, on a tiny tfc_w1a1 (and tfc_w1a2) trained in seconds.

Real components throughout: real MNIST, Brevitas training, QONNX export, finn-plus streamlining and
HW conversion, FINN/qonnx python execution. The XNOR reference must match every one of them exactly,
and a single flipped weight bit must be caught and located.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from frontend_helpers import xnor_from_checkpoint  # tests/hw_builds is on sys.path, as tests/host's helpers

from host.xnor_format import FORMAT_VERSION, load_xnor_model, save_xnor_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(small_mnist: Path, trained_tfc: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained tfc_w1a1 -> export stage -> FINN front end -> export_xnor outputs (npz; front end's ONNX graphs)."""
    return xnor_from_checkpoint(trained_tfc / "checkpoint.pt", small_mnist, tmp_path_factory.mktemp("tfc_w1a1_xnor"),
                                "tfc_w1a1")


def test_export_writes_a_checked_packed_model(exported: dict[str, Path]) -> None:
    model = load_xnor_model(exported["npz"])
    assert [(l.in_features, l.out_features) for l in model.layers] == [(784, 64), (64, 64), (64, 64), (64, 10)]
    assert model.input_shape == (1, 28, 28)
    # sign(x * 2/255 - 1) with sign(0) = +1 is pixel >= 127.5, i.e. pixel >= 128 on integers
    np.testing.assert_array_equal(np.unique(model.input_thresholds), [128])
    assert [l.thresholds is None for l in model.layers] == [False, False, False, True]
    summary = json.loads(exported["summary"].read_text())
    assert summary["weights_packed_bytes"] * 32 == pytest.approx(summary["weights_fp32_bytes"], rel=0.01)
    assert summary["format_version"] == FORMAT_VERSION


def test_xnor_reference_agrees_with_brevitas_and_finn(exported: dict[str, Path], tmp_path: Path) -> None:
    from hw_builds.xnor_verify import verify_xnor

    out = tmp_path / "verify.json"
    report = verify_xnor(exported["npz"], exported["checkpoint"], exported["streamlined"], exported["hw"],
                         exported["data"], out, "tfc_w1a1", test_subset=300, finn_subset=60)
    assert report["passed"] and json.loads(out.read_text()) == report
    assert report["top1_agree_with_xnor"]["brevitas"] == {"agree": 300, "of": 300}
    assert report["top1_agree_with_xnor"]["finn_hw"] == {"agree": 60, "of": 60}
    assert report["top1_all_four_agree"] == {"agree": 60, "of": 60}
    # every layer's accumulators were compared against qonnx's XnorPopcountMatMul
    streamlined = {r["intermediate"]: r for r in report["intermediates"]["finn_streamlined"]}
    assert {f"layer{i}.acc" for i in range(4)} <= set(streamlined)
    assert all(r["images_differing"] == 0 for r in streamlined.values())
    assert report["max_abs_logit_diff_vs_xnor"]["finn_hw"] == 0.0
    assert report["accuracy"]["xnor"] > 0.25  # it learned something (chance is 0.1): not constants compared


def test_one_flipped_weight_bit_is_caught_and_located(exported: dict[str, Path], tmp_path: Path) -> None:
    from hw_builds.xnor_verify import XnorVerificationError, verify_xnor

    model = load_xnor_model(exported["npz"])
    model.layers[1].weights_packed = model.layers[1].weights_packed.copy()
    model.layers[1].weights_packed[5, 0] ^= 1  # neuron 5 of layer 1, first input
    bad = tmp_path / "xnor_model.npz"
    save_xnor_model(model, bad)
    out = tmp_path / "verify.json"
    with pytest.raises(XnorVerificationError, match=r"first at layer1\.acc"):
        verify_xnor(bad, exported["checkpoint"], exported["streamlined"], exported["hw"], exported["data"],
                    out, "tfc_w1a1", test_subset=50, finn_subset=10)
    assert not out.exists()  # no report of a failed verification


def test_thresholds_become_exact_integer_thresholds() -> None:
    from hw_builds.xnor_export import _ceil_thresholds

    t = np.array([[127.5], [-3.0], [1e9], [12.0], [np.float32(64.00001)]])
    got = _ceil_thresholds(t, 0, 200, "test")  # e.g. a popcount of K = 199 bits
    np.testing.assert_array_equal(got[:, 0], [128, 0, 200, 12, 65])
    values = np.arange(0, 200)
    for row_float, row_int in zip(t[:, 0], got[:, 0]):
        np.testing.assert_array_equal(values >= row_float, values >= row_int)


@pytest.fixture(scope="module")
def exported_w1a2(small_mnist: Path, tiny_recipe: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained tfc_w1a2 (1-bit weights, 2-bit activations and input) -> front end -> export_xnor."""
    from models.train import train_model

    out = tmp_path_factory.mktemp("tfc_w1a2_xnor")
    train_model("tfc_w1a2", small_mnist, out / "train", tiny_recipe, progress=False)
    return xnor_from_checkpoint(out / "train" / "checkpoint.pt", small_mnist, out, "tfc_w1a2")


def test_w1a2_export_and_bit_exact_agreement_on_every_test_image(exported_w1a2: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """FINN: INT2 {-1, 0, +1} activations (2 thresholds, ActVal -1), BIPOLAR weights, binaryXnorMode=0."""
    from hw_builds.xnor_verify import verify_xnor

    model = load_xnor_model(exported_w1a2["npz"])
    assert [(l.in_features, l.out_features, l.act_bits, l.act_bias) for l in model.layers] == [
        (784, 64, 2, -1), (64, 64, 2, -1), (64, 64, 2, -1), (64, 10, 2, -1)]
    # the 2-bit input quantizer: round(x * 2/255 - 1) in {-1, 0, +1}, cut at pixels 64 and 192
    np.testing.assert_array_equal(np.unique(model.input_thresholds, axis=0), [[64, 192]])
    assert [None if l.thresholds is None else l.thresholds.shape[1] for l in model.layers] == [2, 2, 2, None]
    report = verify_xnor(exported_w1a2["npz"], exported_w1a2["checkpoint"], exported_w1a2["streamlined"],
                         exported_w1a2["hw"], exported_w1a2["data"], tmp_path / "verify.json", "tfc_w1a2")
    n = report["images"]
    assert n == 300 and report["images_finn"] == n and report["passed"]
    for path in ("brevitas", "finn_streamlined", "finn_hw"):
        assert report["top1_agree_with_xnor"][path] == {"agree": n, "of": n}
    assert report["top1_all_four_agree"] == {"agree": n, "of": n}
    streamlined = {r["intermediate"]: r for r in report["intermediates"]["finn_streamlined"]}
    assert {f"layer{i}.acc" for i in range(4)} | {f"layer{i}.in_bits" for i in range(4)} <= set(streamlined)
    assert all(r["images_differing"] == 0 for r in streamlined.values())
    assert report["max_abs_logit_diff_vs_xnor"]["finn_hw"] == 0.0
    assert report["accuracy"]["xnor"] > 0.25


def test_chunked_verification_reports_what_one_chunk_does(exported: dict[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_xnor streams the test set in chunks (CNV's full traces do not fit in memory): counts, first
    differing images and mirrored neurons must not depend on the chunk size, FINN subset split included."""
    import hw_builds.xnor_verify as verify

    model = load_xnor_model(exported["npz"])
    model.layers[2].weights_packed = model.layers[2].weights_packed.copy()
    model.layers[2].weights_packed[7, 1] ^= 0x81  # two inputs of neuron 7 in layer 2
    bad = tmp_path / "xnor_model.npz"
    save_xnor_model(model, bad)
    reports = []
    for chunk in (1000, 7):
        monkeypatch.setattr(verify, "CHUNK_IMAGES", chunk)
        with pytest.raises(verify.XnorVerificationError, match=r"first at layer2\.acc") as err:
            verify.verify_xnor(bad, exported["checkpoint"], exported["streamlined"], exported["hw"], exported["data"],
                               tmp_path / "verify.json", "tfc_w1a1", test_subset=60, finn_subset=10)
        reports.append(str(err.value))
    assert reports[0] == reports[1]
    monkeypatch.setattr(verify, "CHUNK_IMAGES", 7)
    good = verify.verify_xnor(exported["npz"], exported["checkpoint"], exported["streamlined"], exported["hw"],
                              exported["data"], tmp_path / "verify.json", "tfc_w1a1", test_subset=60, finn_subset=10)
    monkeypatch.setattr(verify, "CHUNK_IMAGES", 1000)
    whole = verify.verify_xnor(exported["npz"], exported["checkpoint"], exported["streamlined"], exported["hw"],
                               exported["data"], tmp_path / "verify.json", "tfc_w1a1", test_subset=60, finn_subset=10)
    assert good == whole and good["passed"]


def test_mirrored_neurons_are_read_from_the_weights() -> None:
    """A neuron whose XNOR weights are the exact negation of Brevitas' is mirrored (K - acc; -acc for a
    signed accumulator); equal, partly different or all-zero rows are not (LFC-w1a1 has 8/21/23 of them)."""
    from host.xnor_format import XnorLayer
    from hw_builds.xnor_verify import mirrored_neurons

    rng = np.random.default_rng(3)
    brevitas = rng.choice([-1, 1], size=(5, 70))
    xnor = brevitas.copy()
    xnor[1] *= -1  # negated by FINN
    xnor[3] *= -1
    xnor[3, 0] *= -1  # ...but one weight differs: not a mirror, a real difference
    layer = XnorLayer(70, 5, np.packbits(xnor > 0, axis=1, bitorder="little"), None)
    k, mask = mirrored_neurons([layer], [brevitas])["layer0.acc"]
    assert k == 70 and mask.tolist() == [False, True, False, False, False]
