"""Brevitas quantizers of bnnflow, declared once and named by every layer in models/topologies.py.

They follow brevitas_examples.bnn_pynq (common.py), because FINN's streamlining recognises exactly
this shape of graph: constant scale 1.0, no zero point, narrow signed range. With ``bit_width=1`` the
quant type is BINARY (sign, +1/-1); with ``bit_width=2`` it is INT on the narrow range {-1, 0, +1}.

Binary activations go through Brevitas' ClampedBinaryQuant: the input is clamped to [-1, 1] with a
clamp whose gradient is zero outside, then ``binary_sign_ste`` passes the gradient straight through.
So the straight-through estimator is the clipped one of Courbariaux et al. (tests/models prove it).
"""

from __future__ import annotations

from brevitas.core.bit_width import BitWidthImplType
from brevitas.core.quant import QuantType
from brevitas.core.restrict_val import FloatToIntImplType, RestrictValueType
from brevitas.core.scaling import ScalingImplType
from brevitas.core.zero_point import ZeroZeroPoint
from brevitas.inject import ExtendedInjector
from brevitas.quant.solver import ActQuantSolver, WeightQuantSolver
from dependencies import value


class CommonQuant(ExtendedInjector):
    """Constant scale 1, no zero point, narrow signed range: binary for 1 bit, integer otherwise."""

    bit_width_impl_type = BitWidthImplType.CONST
    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.FP
    zero_point_impl = ZeroZeroPoint
    float_to_int_impl_type = FloatToIntImplType.ROUND
    scaling_per_output_channel = False
    narrow_range = True
    signed = True

    @value
    def quant_type(bit_width):  # noqa: N805 - dependency-injection "method" without self
        if bit_width is None:
            return QuantType.FP
        if bit_width == 1:
            return QuantType.BINARY
        return QuantType.INT


class WeightQuant(CommonQuant, WeightQuantSolver):
    """Weights: sign(w) in {-1, +1} at 1 bit, {-1, 0, +1} at 2 bits (scale 1, as FINN expects)."""

    scaling_const = 1.0


class ActQuant(CommonQuant, ActQuantSolver):
    """Hidden activations: clamped to [-1, 1], then sign (1 bit) or rounded to {-1, 0, +1} (2 bits)."""

    min_val = -1.0
    max_val = 1.0


class Int8InputQuant(ActQuant):
    """CNV's 8-bit input in Q1.7: scale 2**-7 (power of two), full range [-1, 1 - 2**-7].

    Pixels arrive as x/255*2-1, so the quantized input is round(128*(2x/255-1)) / 128; that value
    is never a .5 tie for an integer pixel x (the numerator 256x-32640 is even, 255*(2k+1) odd).
    """

    bit_width = 8
    min_val = -1.0
    max_val = 1.0 - 2.0**-7
    narrow_range = False
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
