"""The two Keras pieces bnnflow's Larq models need besides Larq's own layers, registered for saved models.

- :class:`FixedPointInput`: CNV's 8-bit input in Q1.7 (as models/quant.py's Int8InputQuant): round(x * 2**7)
  clipped to [-128, 127], times 2**-7; a Larq quantizer (``precision`` 8) with a straight-through gradient.
  The converter maps it exactly to QONNX ``Quant(scale=2**-7, zero_point=0, bit_width=8, signed, narrow=0,
  ROUND)``; TensorFlow's round and numpy's (qonnx) both round half to even, and x * 2**7 is exact.
- :class:`TensorNorm`: one scalar batch norm over the whole logits tensor (models/tensor_norm.py), so that
  the popcount logits get a trainable scale; inference computes (x - mean) / sqrt(var + eps) * w + b in
  float32, the same four operations (Sub, Div, Mul, Add) as the converted graph.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="bnnflow")
class FixedPointInput(lq.quantizers.Quantizer):
    """Signed fixed point with ``bits`` bits, ``frac_bits`` of them fractional: x -> clip(round(x*2^f), ...)/2^f."""

    def __init__(self, bits: int = 8, frac_bits: int = 7, **kwargs) -> None:
        if not 2 <= bits <= 16 or not 0 <= frac_bits < bits:
            raise ValueError(f"FixedPointInput: need 2 <= bits <= 16 and 0 <= frac_bits < bits, got {bits}, {frac_bits}")
        self.bits, self.frac_bits = int(bits), int(frac_bits)
        self.precision = int(bits)
        super().__init__(**kwargs)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        factor = float(2**self.frac_bits)
        lo, hi = -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1

        @tf.custom_gradient
        def _quantize(x):
            q = tf.clip_by_value(tf.round(x * factor), lo, hi) / factor
            return q, lambda dy: dy  # straight through: this sits on the input, nothing trains before it

        return _quantize(inputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "bits": self.bits, "frac_bits": self.frac_bits}


@tf.keras.utils.register_keras_serializable(package="bnnflow")
class TensorNorm(tf.keras.layers.Layer):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with scalar statistics (bnn_pynq's TensorNorm).

    Training normalises by the batch's mean and biased variance and updates the running statistics with
    ``momentum`` (PyTorch's convention: new = (1 - m) * old + m * batch, unbiased variance); inference uses them.
    """

    def __init__(self, epsilon: float = 1e-4, momentum: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epsilon, self.momentum = float(epsilon), float(momentum)

    def build(self, input_shape) -> None:
        self.weight = self.add_weight(name="weight", shape=(), initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(), initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(), initializer="ones", trainable=False)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training=None) -> tf.Tensor:
        if training:
            mean = tf.reduce_mean(inputs)
            var = tf.reduce_mean(tf.square(inputs - mean))
            n = tf.cast(tf.size(inputs), inputs.dtype)
            unbiased = var * n / tf.maximum(n - 1.0, 1.0)
            self.moving_mean.assign((1.0 - self.momentum) * self.moving_mean + self.momentum * mean)
            self.moving_variance.assign((1.0 - self.momentum) * self.moving_variance + self.momentum * unbiased)
            return (inputs - mean) * tf.math.rsqrt(var + self.epsilon) * self.weight + self.bias
        return (inputs - self.moving_mean) / tf.sqrt(self.moving_variance + self.epsilon) * self.weight + self.bias

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon, "momentum": self.momentum}


CUSTOM_OBJECTS = {"FixedPointInput": FixedPointInput, "TensorNorm": TensorNorm}
