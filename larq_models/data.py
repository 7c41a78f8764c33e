"""The prepared data sets (resources/<name>.npz: uint8 ``x_train``, ``y_train``, ``x_test``, ``y_test``) as
Keras inputs: raw pixels 0..255, float32 NHWC, the layout and scale bnnflow's other worlds use (NCHW there).

The 28x28 grey sets feed CNV (3x32x32) zero-padded by 2 pixels and repeated over 3 channels, exactly as
host/inputs.py does for the torch and FINN worlds, so every world sees the same pixels.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ValueError):
    """A prepared data set is missing or not in bnnflow's layout (the message names the file)."""


def load_npz(path: str | Path, train_subset: int | None = None, test_subset: int | None = None) -> dict[str, np.ndarray]:
    """The four uint8 arrays of a prepared data set, optionally only the first N train / test images."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prepared data set not found; run `snakemake {path}` first")
    try:  # the Larq world imports no other world: host.refusal.read_npz's checks, here
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise DataError(f"{path}: a single .npy array, expected a prepared data set (.npz archive)")
            missing = [k for k in ARRAY_KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}")
            arrays = {k: npz[k] for k in ARRAY_KEYS}
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        why = " ".join(str(err).split())[:200]
        raise DataError(f"{path}: not a readable prepared data set ({type(err).__name__}: {why})") from err
    for key, array in arrays.items():
        if array.dtype != np.uint8:
            raise DataError(f"{path}: {key} has dtype {array.dtype}, expected uint8")
    if train_subset is not None:
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][:train_subset], arrays["y_train"][:train_subset]
    if test_subset is not None:
        arrays["x_test"], arrays["y_test"] = arrays["x_test"][:test_subset], arrays["y_test"][:test_subset]
    return arrays


def to_nhwc(x: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) -> uint8 (N, H, W, C) of ``input_shape`` = (H, W, C).

    Raises ValueError when the images cannot feed that shape.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 raw pixels, got {x.dtype}")
    height, width, channels = input_shape
    if x.ndim == 3:
        x = x[..., None]
    elif not (x.ndim == 4 and x.shape[-1] in (1, 3)):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if x.shape[1] < height and x.shape[2] < width and (height - x.shape[1]) % 2 == 0:
        pad_h, pad_w = (height - x.shape[1]) // 2, (width - x.shape[2]) // 2
        x = np.pad(x, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)))
    if x.shape[-1] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[1:] != tuple(input_shape):
        raise ValueError(f"images of shape {x.shape[1:]} (NHWC) cannot feed a model expecting {tuple(input_shape)}")
    return np.ascontiguousarray(x)


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W): the layout of golden.npz and of the QONNX graph's input."""
    return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))
