"""The brevitas layers qsearch's policies are built from (quant/actor.py, quant/gru.py)."""
from __future__ import annotations

import brevitas.nn as qnn
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat, Int32Bias, Uint8ActPerTensorFloat


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """[q_min, q_max] of the paper's eq. (1), non-narrow."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def int_scale(bits: int, signed: bool) -> int:
    """q_s = max(|q_min|, |q_max|)."""
    lo, hi = int_range(bits, signed)
    return max(-lo, hi)


def quant_linear(d_in: int, d_out: int, bits: int) -> qnn.QuantLinear:
    return qnn.QuantLinear(
        d_in, d_out, bias=True,
        weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits,
        weight_narrow_range=False,  # the paper's signed range [-2^(b-1), 2^(b-1)-1], q_s = 2^(b-1)
        bias_quant=Int32Bias, return_quant_tensor=True,
    )


def learned_act(layer, signed: bool, bits: int):
    """An activation quantizer whose scale is learned (after the statistics warm-up, quant/actor.py)."""
    return layer(act_quant=Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat, bit_width=bits,
                 return_quant_tensor=True)


def const_act(layer, signed: bool, bits: int, max_value: float):
    """An activation quantizer with the constant scale max_value / q_s."""
    base = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat
    act_quant = base.let(scaling_impl_type=ScalingImplType.CONST, scaling_init=max_value)
    return layer(act_quant=act_quant, bit_width=bits, return_quant_tensor=True)
