"""The brevitas layers qsearch's policies are built from (quant/actor.py, quant/gru.py)."""
from __future__ import annotations

import brevitas.nn as qnn
import torch
from brevitas.core.scaling import ParameterFromRuntimeStatsScaling, ScalingImplType
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


def learned_act(layer, signed: bool, bits: int, scaling_impl=None):
    """An activation quantizer whose scale is learned (after the statistics warm-up, quant/actor.py);
    scaling_impl replaces brevitas' ParameterFromRuntimeStatsScaling (OutputRange)."""
    act_quant = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat
    if scaling_impl is not None:
        act_quant = act_quant.let(scaling_impl=scaling_impl)
    return layer(act_quant=act_quant, bit_width=bits, return_quant_tensor=True)


class OutputRange(ParameterFromRuntimeStatsScaling):
    """brevitas' learned scale, whose range starts at least at MIN_START when the warm-up ends and is
    learned freely from there: the actor's output quantizer.

    Why: Adam moves the range by about the learning rate per update whatever the gradient's size, so a
    range that starts near zero is a few hundred updates from crossing it. A recurrent actor's MLP sees
    the GRU's state, which starts near zero, so its outputs leave the warm-up nearly constant, in a
    narrow range (bench/output_range_start.py: 0.16 at core 8, 0.007 at core 2, InvertedPendulum
    positions). They sit at its edge, all saturate once they drift, and then only the range gets a
    gradient: in the first recurrent evidence study it went through zero in 4 of 6 QAT runs, a constant
    action for the rest of the run. brevitas' own scaling_min_val cannot hold the range up: it clamps
    the range in training mode but the scale (range / q_s) in eval mode. MLP actors start wider (0.40-1.26
    on five tasks, the same bench), so this floor leaves their training unchanged.
    """

    MIN_START = 0.25

    def init_scale(self):
        starting = self.counter <= self.collect_stats_steps  # brevitas' own test: a loaded or started range stays
        super().init_scale()
        if starting:
            with torch.no_grad():
                self.value.clamp_(min=self.MIN_START)


def const_act(layer, signed: bool, bits: int, max_value: float):
    """An activation quantizer with the constant scale max_value / q_s."""
    base = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat
    act_quant = base.let(scaling_impl_type=ScalingImplType.CONST, scaling_init=max_value)
    return layer(act_quant=act_quant, bit_width=bits, return_quant_tensor=True)
