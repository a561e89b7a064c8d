"""A logic-circuit policy (issue 28): normalized observation -> thermometer bits -> layers of k-input
lookup tables (quant/lut.py) -> an integer head -> the pre-tanh action mean, on the terms the learners
expect of QuantActor (forward, act_quantizers, freeze_scales).

The head is an ordinary integer layer over the last layer's bits, so the integer engine, the C export
and the RTL requantizer can serve it as they serve a QAT MLP's last layer: action i counts the bits of
its own group of nodes (the last layer split evenly among the actions, as DWN's GroupSum; 0/1
weights), centres and scales the count (count - group / 2) * exp(log_gain_i) / sqrt(group), adds a bias,
and goes through the same output quantizer as a QAT actor's (signed, bits_out, a learned range that
starts at least at OutputRange.MIN_START). The count is an integer, so the quantized output is a
monotone step function of it: thresholds in hardware.

Trained by the learners (PolicyConfig kind lut); not yet written as a bundle (the issue's next part).
"""
from __future__ import annotations

import math

import brevitas.nn as qnn
import torch
from torch import nn

from qsearch.config import FieldError, PolicyConfig
from qsearch.quant import fastpath
from qsearch.quant.layers import OutputRange, learned_act
from qsearch.quant.lut import LUTLayer, gaussian_thresholds, thermometer


class LUTActor(nn.Module):
    recurrent = False
    quantized = True

    def __init__(self, obs_dim: int, act_dim: int, cfg: PolicyConfig):
        super().__init__()
        if cfg.luts[-1] < act_dim:
            raise FieldError("luts", f"the last layer has {cfg.luts[-1]} tables, fewer than the {act_dim} actions")
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        self.register_buffer("thresholds", gaussian_thresholds(cfg.thermometer_bits))
        sizes = [obs_dim * cfg.thermometer_bits, *cfg.luts]
        # DWN's advice: a learnable mapping in the first layer only (the later ones would need their own
        # temperatures and train more slowly)
        self.layers = nn.ModuleList(LUTLayer(d_in, d_out, cfg.lut_inputs, cfg.mapping if i == 0 else "random")
                                    for i, (d_in, d_out) in enumerate(zip(sizes, sizes[1:])))
        self.group = cfg.luts[-1] // act_dim  # tables per action; the remainder's bits are not read
        self.log_gain = nn.Parameter(torch.zeros(act_dim))
        self.bias = nn.Parameter(torch.zeros(act_dim))
        self.out = learned_act(qnn.QuantIdentity, True, cfg.quant.bits_out, OutputRange)

    def act_quantizers(self) -> list[nn.Module]:
        return [self.out]

    def freeze_scales(self) -> None:
        """End the output quantizer's warm-up now (QuantActor.freeze_scales)."""
        fastpath.scaling_impl(self.out).init_scale()

    def counts(self, x: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) normalized observations -> (B, act_dim) each action's count of set bits."""
        bits = thermometer(x, self.thresholds)
        for layer in self.layers:
            bits = layer(bits)
        return bits[:, : self.group * self.act_dim].reshape(-1, self.act_dim, self.group).sum(-1)

    def head(self, counts: torch.Tensor):
        """(B, act_dim) counts -> the output quantizer's QuantTensor. Element by element, so the integer
        model tabulates it over every count (quant/lut_integer.py)."""
        centred = (counts - self.group / 2) / math.sqrt(self.group)
        return self.out(centred * self.log_gain.exp() + self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.counts(x)).value
