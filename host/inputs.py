"""Turn a prepared data set's uint8 images into the model's input layout (raw pixels, NCHW).

MLPs take (N, 1, 28, 28). CNV takes (N, 3, 32, 32): CIFAR-10 arrives NHWC and is transposed;
a 28x28 grey set (MNIST, Fashion-MNIST, for CI where CIFAR-10 is absent) is zero-padded by 2 pixels
on every side and repeated over 3 channels. Values stay uint8 0..255; the model scales them itself.
"""

from __future__ import annotations

import numpy as np


def to_model_input(x: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) -> uint8 (N, C, H, W) of ``input_shape``."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 raw pixels, got {x.dtype}")
    channels, height, width = input_shape
    if x.ndim == 3:  # (N, H, W) grey
        x = x[:, None]  # (N, 1, H, W)
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    else:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if x.shape[2] < height and x.shape[3] < width and (height - x.shape[2]) % 2 == 0:
        pad_h, pad_w = (height - x.shape[2]) // 2, (width - x.shape[3]) // 2
        x = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    if x.shape[1] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=1)
    if x.shape[1:] != tuple(input_shape):
        raise ValueError(f"images of shape {x.shape[1:]} (as NCHW) cannot feed a model expecting {tuple(input_shape)}")
    return np.ascontiguousarray(x)
