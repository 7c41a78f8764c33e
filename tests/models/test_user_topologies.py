"""Topologies as data (issue 12): the built-in four are entries of the same kind as a user's; a user's entry
builds, trains by the same recipe and survives its checkpoint; what FINN or the XNOR reference cannot map
is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.datasets import load_npz
from models.topologies import FAMILIES, build_model, model_spec, topology_from_entry
from models.topology_spec import BUILTIN_FAMILIES, TopologyError, builtin_entry, check_topology, resolve_entry
from models.train import train_model

MLP = {"kind": "mlp", "input_shape": [1, 28, 28], "weight_bits": 1, "act_bits": 1, "input_bits": None,
       "hidden": [100, 37]}
CONV = {"kind": "conv", "input_shape": [1, 28, 28], "weight_bits": 1, "act_bits": 2, "input_bits": 8,
        "conv": [{"channels": 8, "kernel": 3}, {"channels": 8, "kernel": 3, "pool": True},
                 {"channels": 16, "kernel": 3, "pool": True}, {"channels": 16, "kernel": 5}],
        "dense": [24]}


@pytest.mark.parametrize("name", [f"{f}_w{w}a{a}" for f in BUILTIN_FAMILIES for w, a in ((1, 1), (1, 2), (2, 2))])
def test_builtin_names_are_entries_of_the_same_kind(name: str) -> None:
    """tfc_w1a2 and friends resolve to entries that pass the user check and build the same network."""
    entry = resolve_entry(name)
    check_topology(name, entry)
    assert model_spec(name).topology == topology_from_entry(entry) == FAMILIES[name.split("_")[0]]
    by_name, by_entry = build_model(name), build_model(name, entry=entry)
    assert [tuple(p.shape) for p in by_name.parameters()] == [tuple(p.shape) for p in by_entry.parameters()]


def test_user_entries_build_the_declared_shapes() -> None:
    mlp = build_model("mlp_100_37", entry=MLP, num_classes=5)
    assert [tuple(m.weight.shape) for m in mlp.quant_layers()] == [(100, 784), (37, 100), (5, 37)]
    conv = build_model("conv_small", entry=CONV, num_classes=5)
    assert [tuple(m.weight.shape) for m in conv.quant_layers()] == [
        (8, 1, 3, 3), (8, 8, 3, 3), (16, 8, 3, 3), (16, 16, 5, 5), (24, 16), (5, 24)]
    assert conv(torch.zeros(2, 1, 28, 28)).shape == (2, 5)


REFUSED = [
    ({**MLP, "weight_bits": 2, "act_bits": 1}, "FINN has no HW layer for binary activations with 2-bit weights"),
    ({**MLP, "weight_bits": 3, "act_bits": 3}, "the XNOR reference computes 1- and 2-bit"),
    ({**MLP, "input_bits": 8}, "an 8-bit input is mapped by the XNOR reference only into a conv layer"),
    ({**MLP, "hidden": []}, "needs at least one hidden layer"),
    ({**CONV, "conv": CONV["conv"][:3]}, "the conv stack ends at 5x5, not 1x1"),
    ({**CONV, "conv": [{"channels": 8, "kernel": 2, "pool": True}]}, "max pool is on an odd 27x27 map"),
    ({**CONV, "conv": [{"channels": 8, "kernel": 29}]}, "does not fit its 28x28 input map"),
    ({**CONV, "input_shape": [2, 28, 28]}, "is not [C, H, W] with C 1 or 3"),
    ({**CONV, "hidden": [10]}, "a conv net has conv: and dense:"),
]


@pytest.mark.parametrize(("entry", "reason"), REFUSED, ids=[r[1][:30] for r in REFUSED])
def test_unmappable_topology_is_refused_with_the_reason(entry: dict, reason: str) -> None:
    with pytest.raises(TopologyError, match="topology 'mine'") as err:
        resolve_entry("mine", {"mine": entry})
    assert reason in str(err.value)
    with pytest.raises(TopologyError):
        build_model("mine", entry=entry)


def test_unknown_name_lists_the_declared_topologies() -> None:
    with pytest.raises(TopologyError, match=r"unknown model name 'mlp_9'.*\['mlp_100_37'\]"):
        resolve_entry("mlp_9", {"mlp_100_37": MLP})
    assert builtin_entry("cnv_w2a2")["weight_bits"] == 2 and builtin_entry("mine") is None


def test_user_mlp_trains_on_five_classes_and_survives_its_checkpoint(small_mnist: Path, tmp_path: Path,
                                                                     tiny_recipe: dict) -> None:
    """Digits 0-4 of real MNIST: a 100-37 MLP with 5 outputs trains by the default recipe; the checkpoint holds
    the entry and rebuilds the same network without the config."""
    arrays = load_npz(small_mnist)
    five = {k: v for k, v in arrays.items()}
    for split in ("train", "test"):
        keep = arrays[f"y_{split}"] < 5
        five[f"x_{split}"], five[f"y_{split}"] = arrays[f"x_{split}"][keep], arrays[f"y_{split}"][keep]
    data = tmp_path / "digits5.npz"
    np.savez(data, **five)
    metrics = train_model("mlp_100_37", data, tmp_path / "train", {**tiny_recipe, "val_size": 50},
                          progress=False, topology=MLP, num_classes=5)
    assert metrics["num_classes"] == 5 and metrics["topology"] == MLP
    assert metrics["test_accuracy"] > 0.5  # chance is 0.2
    model = load_checkpoint(tmp_path / "train" / "checkpoint.pt")
    assert model.entry == MLP and model.spec.num_classes == 5
    x = torch.from_numpy(five["x_test"][:50, None].astype(np.float32))
    assert model(x).shape == (50, 5)
    with pytest.raises(ValueError, match="y_train holds label 4, outside the model's 4 classes"):
        train_model("mlp_100_37", data, tmp_path / "again", tiny_recipe, progress=False, topology=MLP, num_classes=4)
