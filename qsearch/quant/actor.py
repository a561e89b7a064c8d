"""The policy network: a QAT actor built from brevitas layers, or the FP32 baseline (paper Section 2.2).

Quantize/De-Quantize sits at the input (signed, bits_in), on every weight matrix (signed, bits_weight,
scale = the tensor's absolute maximum, not learned), after every ReLU (unsigned, bits_act) and before
the final tanh (signed, bits_out). The integer scale is q_s = max(|q_min|, |q_max|), which is brevitas'
IntScaling for non-narrow ranges. Activation scales come from brevitas' ParameterFromRuntimeStats: an
exponential moving 99.999th percentile over the first 300 training-mode calls (the warm-up), then a
parameter learned by gradient. Biases are quantized to the accumulator's scale (Int32Bias) so the
deployed network adds them as integers.

Convention: the actor is in training mode only inside its own gradient update; every other call
(acting, target computation, evaluation) runs in eval mode, so the warm-up counts update batches.
"""
from __future__ import annotations

import brevitas.nn as qnn
import torch
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat, Int32Bias, Uint8ActPerTensorFloat
from torch import nn

from qsearch.config import PolicyConfig
from qsearch.quant import fastpath


class QuantActor(nn.Module):
    """obs (normalized) -> pre-tanh action mean. The caller applies tanh and the action-space scaling."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        dims = [obs_dim] + [cfg.width] * cfg.depth
        q = cfg.quant
        if q is None:
            layers = []
            for d_in, d_out in zip(dims[:-1], dims[1:]):
                layers += [nn.Linear(d_in, d_out), nn.ReLU()]
            layers.append(nn.Linear(dims[-1], act_dim))
            self.net = nn.Sequential(*layers)
            return
        self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=q.bits_in, return_quant_tensor=True)
        self.linears = nn.ModuleList(
            _quant_linear(d_in, d_out, q.bits_weight) for d_in, d_out in zip(dims, dims[1:] + [act_dim])
        )
        self.relus = nn.ModuleList(
            qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=q.bits_act, return_quant_tensor=True)
            for _ in range(cfg.depth)
        )
        self.out = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=q.bits_out, return_quant_tensor=True)

    @property
    def quantized(self) -> bool:
        return self.cfg.quant is not None

    def act_quantizers(self) -> list[nn.Module]:
        """The QuantIdentity / QuantReLU layers in forward order."""
        return [self.inp, *self.relus, self.out]

    def freeze_scales(self) -> None:
        """End the warm-up now: copy each moving percentile into the learned scale parameter.

        A saved actor is restored with its `value` parameters (brevitas skips the warm-up on load and
        never saves the moving statistics), so an actor trained for fewer than 300 updates must have
        its statistics copied over before saving or extracting the integer model."""
        if self.quantized:
            for layer in self.act_quantizers():
                fastpath.scaling_impl(layer).init_scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantized:
            return self.net(x)
        if fastpath.ready(self):
            return fastpath.forward(self, x)
        if not self.training and not torch.is_grad_enabled():  # acting or evaluating during the warm-up
            return fastpath.forward(self, x, warming=True)
        return self.quant_forward(x)[-1].value

    def quant_forward(self, x: torch.Tensor) -> list:
        """brevitas' own forward, returning the QuantTensor after every quantizer: the input, each
        hidden activation and the output. Their .int() values are what the integer engine must match."""
        qts = [self.inp(x)]
        for lin, relu in zip(self.linears[:-1], self.relus):
            qts.append(relu(lin(qts[-1])))
        qts.append(self.out(self.linears[-1](qts[-1])))
        return qts


def _quant_linear(d_in: int, d_out: int, bits: int) -> qnn.QuantLinear:
    return qnn.QuantLinear(
        d_in, d_out, bias=True,
        weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits,
        weight_narrow_range=False,  # the paper's signed range [-2^(b-1), 2^(b-1)-1], q_s = 2^(b-1)
        bias_quant=Int32Bias, return_quant_tensor=True,
    )
