"""CNV through the XNOR reference: export from FINN's HW graph and the four-way verification, exactly.

A cnv_w1a1 and a cnv_w1a2 trained for one epoch on the 600 real MNIST images of small_mnist (padded to 3x32x32) are
exported by Brevitas, streamlined and converted by finn-plus, and read into an xnor_model.npz: a
bit-plane first layer (CNV's 8-bit input), binary conv layers with their max pools, dense layers.
The XNOR reference (packed im2col) must equal Brevitas, FINN's streamlined model and FINN's HW model
on every layer's input map and accumulator; a flipped weight bit inside a conv layer must be caught
and located.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from frontend_helpers import xnor_from_checkpoint  # tests/hw_builds is on sys.path, as tests/host's helpers

from host.xnor_format import load_xnor_model, save_xnor_model

@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    torch.set_num_threads(1)


def _export(name: str, small_mnist: Path, tiny_recipe: dict, out: Path) -> dict[str, Path]:
    from models.train import train_model

    train_model(name, small_mnist, out / "train", {**tiny_recipe, "epochs": 1}, progress=False)
    return xnor_from_checkpoint(out / "train" / "checkpoint.pt", small_mnist, out, name)


@pytest.fixture(scope="module")
def cnv_w1a1(small_mnist: Path, tiny_recipe: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _export("cnv_w1a1", small_mnist, tiny_recipe, tmp_path_factory.mktemp("cnv_w1a1"))


def test_cnv_export_reads_convs_pools_and_the_8bit_input(cnv_w1a1: dict[str, Path]) -> None:
    model = load_xnor_model(cnv_w1a1["npz"])
    assert model.input_shape == (3, 32, 32) and model.is_conv
    # Q1.7 input: 255 thresholds, one set for every colour channel (FINN stores one row)
    assert model.input_thresholds.shape in ((1, 255), (3, 255))
    assert np.all(np.diff(model.input_thresholds, axis=1) >= 0)
    kinds = [layer.kind for layer in model.layers]
    assert kinds == ["bitplane_conv"] + ["xnor_conv"] * 5 + ["xnor_dense"] * 3
    first = model.layers[0]
    assert (first.act_bits, first.act_bias, first.in_features, first.out_features) == (8, -128, 27, 64)
    assert [l.conv.in_dim for l in model.layers[:6]] == [(32, 32), (30, 30), (14, 14), (12, 12), (5, 5), (3, 3)]
    assert [l.pool is not None for l in model.layers] == [False, True, False, True] + [False] * 5
    assert [l.out_shape() for l in model.layers[:6]][-1] == (1, 1, 256)
    assert model.size_report()["compression_x"] == pytest.approx(32.0, rel=0.01)


def test_cnv_four_paths_agree_on_every_layer(cnv_w1a1: dict[str, Path], tmp_path: Path) -> None:
    from hw_builds.xnor_verify import verify_xnor

    report = verify_xnor(cnv_w1a1["npz"], cnv_w1a1["checkpoint"], cnv_w1a1["streamlined"], cnv_w1a1["hw"],
                         cnv_w1a1["data"], tmp_path / "verify.json", "cnv_w1a1", test_subset=200, finn_subset=12)
    assert report["passed"]
    assert report["top1_agree_with_xnor"]["brevitas"] == {"agree": 200, "of": 200}
    assert report["top1_all_four_agree"] == {"agree": 12, "of": 12}
    for path in ("brevitas", "finn_streamlined"):  # every layer's input map and accumulator compared
        names = {r["intermediate"] for r in report["intermediates"][path]}
        assert names == {f"layer{i}.{t}" for i in range(9) for t in ("in_bits", "acc")}, path
    hw = {r["intermediate"] for r in report["intermediates"]["finn_hw"]}
    assert {f"layer{i}.in_bits" for i in range(9)} | {"layer8.acc"} == hw
    assert report["max_abs_logit_diff_vs_xnor"]["finn_hw"] == 0.0
    assert report["accuracy"]["xnor"] > 0.2  # learned something (chance 0.1): not constants compared


def test_a_flipped_conv_weight_is_caught_at_its_layer(cnv_w1a1: dict[str, Path], tmp_path: Path) -> None:
    from hw_builds.xnor_verify import XnorVerificationError, verify_xnor

    model = load_xnor_model(cnv_w1a1["npz"])
    layer = model.layers[2]  # the binary conv after the first pool
    layer.weights_packed = layer.weights_packed.copy()
    layer.weights_packed[3, 10] ^= 0x10  # channel 3, one position of its 3x3x64 window
    bad = tmp_path / "xnor_model.npz"
    save_xnor_model(model, bad)
    out = tmp_path / "verify.json"
    with pytest.raises(XnorVerificationError, match=r"first at layer2\.acc"):
        verify_xnor(bad, cnv_w1a1["checkpoint"], cnv_w1a1["streamlined"], cnv_w1a1["hw"], cnv_w1a1["data"],
                    out, "cnv_w1a1", test_subset=20, finn_subset=2)
    assert not out.exists()


def test_cnv_w1a2_two_bit_feature_maps_agree(small_mnist: Path, tiny_recipe: dict, tmp_path: Path) -> None:
    """2-bit activations in the conv stack: bit-plane convs, max pooling of 2-bit codes."""
    from hw_builds.xnor_verify import verify_xnor

    paths = _export("cnv_w1a2", small_mnist, tiny_recipe, tmp_path)
    model = load_xnor_model(paths["npz"])
    assert [l.act_bits for l in model.layers] == [8] + [2] * 8
    assert all(l.act_bias == -1 for l in model.layers[1:])
    report = verify_xnor(paths["npz"], paths["checkpoint"], paths["streamlined"], paths["hw"], paths["data"],
                         tmp_path / "verify.json", "cnv_w1a2", test_subset=100, finn_subset=5)
    assert report["passed"] and report["top1_all_four_agree"] == {"agree": 5, "of": 5}
    assert all(r["images_differing"] == 0 for rows in report["intermediates"].values() for r in rows)
