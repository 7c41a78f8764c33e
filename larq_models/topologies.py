"""The BNN-PYNQ topologies (TFC / SFC / LFC MLPs, CNV) as Larq models, layer for layer as models/topologies.py.

Model names are ``<family>_w1a1_larq`` (binary weights and activations: Larq's ``ste_sign``). The torch
world's layer pattern, in Keras' NHWC layout (the sign sits in the *next* layer's ``input_quantizer``):

    raw pixels 0..255 -> Rescaling(2/255, -1) -> [QuantConv2D -> BatchNorm (-> MaxPool)]* -> Flatten
        -> [QuantDense -> BatchNorm]* -> QuantDense(10) -> TensorNorm

Every QuantDense / QuantConv2D has ``kernel_quantizer="ste_sign"``, ``kernel_constraint="weight_clip"`` (latent
weights in [-1, 1]), no bias; hidden layers take ``input_quantizer="ste_sign"`` of the batch norm before them.
The first layer's input as in the Brevitas models: the MLPs take the sign of the scaled pixel (pixel >= 128
-> +1); CNV takes it as 8-bit Q1.7 (:class:`larq_models.layers.FixedPointInput`). A max pool between a batch
norm and the next sign commutes with the sign (sign is monotone), so this equals Brevitas' BN -> sign -> pool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import larq as lq
import tensorflow as tf

from larq_models.layers import FixedPointInput, TensorNorm

NUM_CLASSES = 10
MODEL_NAME_RE = re.compile(r"^(tfc|sfc|lfc|cnv)_w1a1_larq$")


@dataclass(frozen=True)
class Topology:
    """One family: NHWC input shape, 3x3 convs (channels, pool after), dense widths, batch-norm epsilon."""

    input_shape: tuple[int, int, int]
    conv: tuple[tuple[int, bool], ...]
    fc: tuple[int, ...]
    bn_eps: float = 1e-5


FAMILIES: dict[str, Topology] = {
    "tfc": Topology((28, 28, 1), (), (64, 64, 64)),
    "sfc": Topology((28, 28, 1), (), (256, 256, 256)),
    "lfc": Topology((28, 28, 1), (), (1024, 1024, 1024)),
    "cnv": Topology((32, 32, 3), ((64, False), (64, True), (128, False), (128, True), (256, False), (256, False)),
                    (512, 512), bn_eps=1e-4),
}


def parse_name(name: str) -> Topology:
    """The topology of a Larq model name; ValueError naming the accepted pattern otherwise."""
    match = MODEL_NAME_RE.match(name)
    if match is None:
        raise ValueError(f"unknown Larq model name {name!r}: expected <family>_w1a1_larq with family in "
                         f"{sorted(FAMILIES)}, e.g. 'tfc_w1a1_larq'")
    return FAMILIES[match.group(1)]


def build_larq_model(name: str, seed: int = 0) -> tf.keras.Model:
    """An untrained Larq model by name (``lfc_w1a1_larq``, ``cnv_w1a1_larq``); weights seeded by ``seed``."""
    topo = parse_name(name)
    tf.keras.utils.set_random_seed(seed)
    binary = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False,
                  kernel_initializer=tf.keras.initializers.RandomUniform(-1.0, 1.0, seed=seed))
    momentum = 0.9  # Keras' momentum is PyTorch's 1 - 0.1
    inputs = tf.keras.Input(shape=topo.input_shape, name="pixels")
    x = tf.keras.layers.Rescaling(2.0 / 255.0, offset=-1.0, name="scale_pixels")(inputs)
    first = True
    for i, (channels, pool) in enumerate(topo.conv):
        quantizer = FixedPointInput(8, 7) if first else "ste_sign"
        x = lq.layers.QuantConv2D(channels, 3, input_quantizer=quantizer, name=f"conv{i}", **binary)(x)
        x = tf.keras.layers.BatchNormalization(momentum=momentum, epsilon=topo.bn_eps, name=f"conv{i}_bn")(x)
        if pool:
            x = tf.keras.layers.MaxPooling2D(2, name=f"conv{i}_pool")(x)
        first = False
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i, width in enumerate((*topo.fc, NUM_CLASSES)):
        x = lq.layers.QuantDense(width, input_quantizer="ste_sign", name=f"fc{i}", **binary)(x)
        if i < len(topo.fc):
            x = tf.keras.layers.BatchNormalization(momentum=momentum, epsilon=topo.bn_eps, name=f"fc{i}_bn")(x)
    outputs = TensorNorm(name="tensor_norm")(x)
    return tf.keras.Model(inputs, outputs, name=name)
