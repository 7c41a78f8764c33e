"""Training stage: outputs per the contract, determinism, resume == uninterrupted, clear errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.datasets import DataError
from models.checkpoint import file_sha256, load_checkpoint
from models.train import TrainConfig, TrainConfigError, batch_bounds, sqr_hinge_loss, train_model

TINY_RECIPE = {"epochs": 2, "batch_size": 50, "lr": 0.02, "val_size": 100, "loss": "cross_entropy"}
RECIPE_3 = {**TINY_RECIPE, "epochs": 3, "dropout": 0.2}  # dropout: the resume must restore the RNG too


def test_outputs_and_metrics(trained_tfc: Path) -> None:
    for name in ("checkpoint.pt", "metrics.json", "history.csv", "curves.png"):
        assert (trained_tfc / name).stat().st_size > 0, name
    assert any((trained_tfc / "tensorboard").glob("events.out.tfevents.*"))
    assert not (trained_tfc / "state.pt").exists()  # the resume point is removed once training ends
    metrics = json.loads((trained_tfc / "metrics.json").read_text())
    for key in ("test_accuracy", "val_accuracy", "epochs", "train_seconds", "seed"):
        assert key in metrics
    assert metrics["epochs"] == 2 and metrics["n_train"] == 500 and metrics["n_val"] == 100
    assert 0.3 < metrics["test_accuracy"] <= 1.0  # 2 tiny epochs on real MNIST: far above chance (0.1)
    # footprint: tfc has 784*64 + 64*64*2 + 64*10 weights, 1 bit each against 32
    n = 784 * 64 + 2 * 64 * 64 + 64 * 10
    assert metrics["footprint"] == {"quantized_weights": n, "weight_bits": 1, "weight_bytes_quantized": n // 8,
                                    "weight_bytes_float32": 4 * n, "compression_ratio": 32.0}
    with open(trained_tfc / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert metrics["val_accuracy"] == max(float(r["val_accuracy"]) for r in rows)
    assert metrics["checkpoint_sha256"] == file_sha256(trained_tfc / "checkpoint.pt")


def test_checkpoint_reloads_to_the_same_test_accuracy(trained_tfc: Path, small_mnist: Path) -> None:
    from models.datasets import load_npz
    from host.inputs import to_model_input

    model = load_checkpoint(trained_tfc / "checkpoint.pt")
    assert not model.training
    arrays = load_npz(small_mnist)
    x = torch.from_numpy(to_model_input(arrays["x_test"], (1, 28, 28))).float()
    with torch.no_grad():
        acc = (model(x).argmax(1).numpy() == arrays["y_test"]).mean()
    assert acc == json.loads((trained_tfc / "metrics.json").read_text())["test_accuracy"]


def test_same_seed_same_checkpoint_other_seed_differs(small_mnist: Path, tmp_path: Path) -> None:
    hashes = [train_model("tfc_w1a1", small_mnist, tmp_path / f"run{i}", {**RECIPE_3, "seed": seed}, progress=False)
              ["checkpoint_sha256"] for i, seed in enumerate((7, 7, 8))]
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def test_resume_equals_uninterrupted(small_mnist: Path, tmp_path: Path) -> None:
    full = train_model("tfc_w1a1", small_mnist, tmp_path / "full", RECIPE_3, progress=False)
    assert train_model("tfc_w1a1", small_mnist, tmp_path / "killed", RECIPE_3, stop_after_epoch=1, progress=False) is None
    assert (tmp_path / "killed" / "state.pt").is_file()
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()
    shutil.rmtree(tmp_path / "killed" / "tensorboard")  # what Snakemake does to an incomplete job's outputs
    resumed = train_model("tfc_w1a1", small_mnist, tmp_path / "killed", RECIPE_3, progress=False)
    assert resumed["checkpoint_sha256"] == full["checkpoint_sha256"]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]  # noqa: E731
    read = lambda p: list(csv.DictReader(open(p / "history.csv")))  # noqa: E731
    assert drop(read(tmp_path / "killed")) == drop(read(tmp_path / "full"))
    # issue 17 case 10: TensorBoard holds every epoch after the resume, with history.csv's values
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in ("killed", "full"):
        events = EventAccumulator(str(tmp_path / run / "tensorboard"))
        events.Reload()
        scalars = events.Scalars("val/accuracy")
        assert [e.step for e in scalars] == [1, 2, 3]
        assert [e.value for e in scalars] == pytest.approx([float(r["val_accuracy"]) for r in read(tmp_path / "full")])


def test_state_of_another_recipe_is_not_resumed(small_mnist: Path, tmp_path: Path) -> None:
    train_model("tfc_w1a1", small_mnist, tmp_path, {**RECIPE_3, "lr": 0.01}, stop_after_epoch=1, progress=False)
    fresh = train_model("tfc_w1a1", small_mnist, tmp_path / "fresh", RECIPE_3, progress=False)
    other = train_model("tfc_w1a1", small_mnist, tmp_path, RECIPE_3, progress=False)
    assert other["checkpoint_sha256"] == fresh["checkpoint_sha256"]


def test_sqr_hinge_loss_targets() -> None:
    logits = torch.tensor([[1.0, -1.0, -1.0], [2.0, 0.0, -3.0]])
    labels = torch.tensor([0, 1])
    # row 0 meets every margin; row 1: class 0 should be <= -1 (2 -> (1+2)^2), class 1 >= 1 (0 -> 1)
    assert float(sqr_hinge_loss(logits, labels)) == pytest.approx((0 + 9 + 1) / 6)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"loss": "mse"}, {"optimiser": "adam"}, {"dropout": 1.0}])
def test_bad_recipe_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        TrainConfig.from_dict({**TINY_RECIPE, **bad})


def test_missing_dataset_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.npz"):
        train_model("tfc_w1a1", tmp_path / "nope.npz", tmp_path / "out", TINY_RECIPE, progress=False)
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_cifar_shaped_data_is_refused_by_an_mlp(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8), "y_train": np.zeros(300, np.uint8),
              "x_test": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), "y_test": np.zeros(10, np.uint8)}
    np.savez(tmp_path / "cifar_like.npz", **arrays)
    # issue 17 case 5: the shape message names the data set file
    with pytest.raises(DataError, match=r"cifar_like.npz: x_train/x_test: images of shape .* cannot feed a model expecting"):
        train_model("tfc_w1a1", tmp_path / "cifar_like.npz", tmp_path / "out", TINY_RECIPE, progress=False)


def test_issue17_case5_32x32_grey_images_name_the_file(tmp_path: Path) -> None:
    arrays = {"x_train": np.zeros((300, 32, 32), np.uint8), "y_train": np.zeros(300, np.uint8),
              "x_test": np.zeros((10, 32, 32), np.uint8), "y_test": np.zeros(10, np.uint8)}
    np.savez(tmp_path / "mnist32.npz", **arrays)
    with pytest.raises(DataError, match=r"mnist32.npz: x_train/x_test: images of shape \(1, 32, 32\)"):
        train_model("tfc_w1a1", tmp_path / "mnist32.npz", tmp_path / "out", TINY_RECIPE, progress=False)
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_issue17_case6_recipe_types_are_checked() -> None:
    """A string lr from overrides is a TrainConfigError naming the key, not a TypeError at training start."""
    with pytest.raises(TrainConfigError, match=r"training config lr='fast': expected float, got str"):
        TrainConfig.for_model({**TINY_RECIPE, "overrides": {"tfc_w1a1": {"lr": "fast"}}}, "tfc_w1a1")
    with pytest.raises(TrainConfigError, match=r"batch_size"):
        TrainConfig.from_dict({**TINY_RECIPE, "batch_size": 1})


@pytest.mark.parametrize(("n", "batch_size", "last"), [(55_000, 9, 10), (55_000, 7, 8), (55_000, 3, 4), (201, 50, 51),
                                                      (200, 50, 50), (7, 2, 3), (2, 2, 2), (3, 50, 3)])
def test_issue17_case7_a_last_batch_of_one_joins_the_one_before(n: int, batch_size: int, last: int) -> None:
    bounds = batch_bounds(n, batch_size)
    assert bounds[0][0] == 0 and bounds[-1][1] == n and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert bounds[-1][1] - bounds[-1][0] == last and min(stop - start for start, stop in bounds) >= 2


def test_issue17_case7_training_with_a_last_batch_of_one(tmp_path: Path) -> None:
    """301 training images (100 held out) at batch 50: 4 batches, the last of 51, no batch-norm crash."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (301, 28, 28), dtype=np.uint8), "y_train": rng.integers(0, 10, 301).astype(np.uint8),
              "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "y_test": rng.integers(0, 10, 20).astype(np.uint8)}
    np.savez(tmp_path / "odd.npz", **arrays)
    metrics = train_model("tfc_w1a1", tmp_path / "odd.npz", tmp_path / "out", {**TINY_RECIPE, "epochs": 1}, progress=False)
    assert (tmp_path / "out" / "checkpoint.pt").is_file() and metrics["epochs"] == 1


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_load_checkpoint_refuses_garbage(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="checkpoint.pt"):
        load_checkpoint(path)


def test_load_checkpoint_refuses_foreign_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a bnnflow checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_overrides_apply_family_then_model() -> None:
    section = {**TINY_RECIPE, "overrides": {"tfc": {"epochs": 5, "lr": 0.01}, "tfc_w1a2": {"lr": 0.005}, "sfc": {"epochs": 9}}}
    assert TrainConfig.for_model(section, "tfc_w1a1").epochs == 5
    assert TrainConfig.for_model(section, "tfc_w1a1").lr == 0.01
    assert TrainConfig.for_model(section, "tfc_w1a2").lr == 0.005
    assert TrainConfig.for_model(section, "lfc_w1a1").epochs == TINY_RECIPE["epochs"]


def test_sigkill_mid_run_then_resume_equals_uninterrupted(small_mnist: Path, tmp_path: Path) -> None:
    """A real kill: SIGKILL the training process once its first per-epoch state exists, then resume."""
    import signal
    import subprocess
    import sys
    import time

    recipe = {**RECIPE_3, "epochs": 12}
    code = ("import json, sys, torch; torch.set_num_threads(1); from models.train import train_model; "
            "train_model('tfc_w1a1', sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), progress=False)")
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", code, str(small_mnist), str(killed_dir), json.dumps(recipe)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed_dir / "state.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert not (killed_dir / "checkpoint.pt").exists()
    done_epochs = torch.load(killed_dir / "state.pt", weights_only=False)["epoch"]
    assert 1 <= done_epochs < recipe["epochs"]
    resumed = train_model("tfc_w1a1", small_mnist, killed_dir, recipe, progress=False)
    full = train_model("tfc_w1a1", small_mnist, tmp_path / "full", recipe, progress=False)
    assert resumed["checkpoint_sha256"] == full["checkpoint_sha256"]


def test_unreadable_state_is_ignored(small_mnist: Path, tmp_path: Path) -> None:
    (tmp_path / "state.pt").write_bytes(b"half a file")
    metrics = train_model("tfc_w1a1", small_mnist, tmp_path, TINY_RECIPE, progress=False)
    fresh = train_model("tfc_w1a1", small_mnist, tmp_path / "fresh", TINY_RECIPE, progress=False)
    assert metrics["checkpoint_sha256"] == fresh["checkpoint_sha256"]
