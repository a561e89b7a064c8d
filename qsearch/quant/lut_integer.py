"""A logic-circuit policy's integer model (issue 28, second part, not yet in the bundle): what the
hardware computes, run in NumPy.

  level = number of thresholds T_i with x_norm >= T_i        float32: the only floating-point step, per
                                                              feature, against the thermometer's thresholds
  bit   = level > i                                          input bit i of each feature
  bit'  = table[node, sum_l bit[connection[node, l]] 2^l]    each LUT layer: wiring and a truth table
  count = number of set bits in the action's group           the head's 0/1 weights
  o     = head[action, count]                                the output integer (signed, bits_out)
  a     = tanh_lut[o - q_min] / LUT_ONE                      as a QAT model's

The head's table is the trained head (quantizer included) evaluated at every count the group can give:
its arithmetic is element by element, so the table holds exactly what the float32 model gives, and
because the head is monotone in the count, hardware can hold it as thresholds on the count instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qsearch.obs_norm import ObsNorm
from qsearch.quant.integer import LUT_ONE, tanh_table
from qsearch.quant.layers import int_range
from qsearch.quant.lut_actor import LUTActor


@dataclass
class LUTLayerInts:
    connections: np.ndarray  # (nodes, k) int64: the input each address bit l reads
    tables: np.ndarray  # (nodes, 2^k) uint8: each node's output bit at each address


@dataclass
class IntLUTModel:
    obs_norm: ObsNorm
    thresholds: np.ndarray  # (thermometer bits,) float32, increasing, in normalized units
    layers: list[LUTLayerInts]
    group: int  # nodes of the last layer per action
    head: np.ndarray  # (act_dim, group + 1) int64: the output integer at each count
    out_bits: int
    tanh_lut: np.ndarray  # (2**out_bits,) int16, indexed by o - q_min
    output_scale: float  # float scale of the output integer, documentation and checks only

    def levels(self, x_norm: np.ndarray) -> np.ndarray:
        """(B, obs_dim) normalized observations -> (B, obs_dim) thermometer levels. A NaN reaches no
        threshold: level 0."""
        x = np.asarray(x_norm, np.float32)
        return (x[..., None] >= self.thresholds).sum(-1).astype(np.int64)

    def run_int(self, levels: np.ndarray) -> list[np.ndarray]:
        """Levels -> [levels, each layer's bits, the counts, o]."""
        outs = [np.asarray(levels, np.int64)]
        bits = (outs[0][..., None] > np.arange(len(self.thresholds))).reshape(len(levels), -1).astype(np.int64)
        for layer in self.layers:
            address = (bits[:, layer.connections] << np.arange(layer.connections.shape[1])).sum(-1)
            bits = layer.tables[np.arange(len(layer.tables)), address].astype(np.int64)
            outs.append(bits)
        act_dim = len(self.head)
        counts = bits[:, : self.group * act_dim].reshape(len(bits), act_dim, self.group).sum(-1)
        outs += [counts, self.head[np.arange(act_dim), counts]]
        return outs

    def act(self, x_norm: np.ndarray) -> np.ndarray:
        """Normalized observations -> actions in [-1, 1] (the evaluator's policy interface)."""
        return self.action(self.run_int(self.levels(x_norm))[-1])

    def action(self, o: np.ndarray) -> np.ndarray:
        return self.tanh_lut[o - int_range(self.out_bits, True)[0]].astype(np.float32) / LUT_ONE


def extract(actor: LUTActor, obs_norm: ObsNorm) -> IntLUTModel:
    """The wiring, truth tables and head table of a trained LUT actor (eval mode)."""
    actor = actor.eval()
    with torch.no_grad():
        layers = [LUTLayerInts(layer.connections().numpy().astype(np.int64), layer.truth_tables().numpy())
                  for layer in actor.layers]
        counts = torch.arange(actor.group + 1, dtype=torch.float32)[:, None].expand(-1, actor.act_dim)
        out = actor.head(counts)
        head = out.int().numpy().astype(np.int64).T.copy()
        scale = float(out.scale)
    bits_out = int(actor.out.act_quant.bit_width())
    return IntLUTModel(obs_norm, actor.thresholds.numpy().copy(), layers, actor.group, head, bits_out,
                       tanh_table(bits_out, scale), scale)
