"""A logic-circuit policy's integer model (integer format version 3): what the hardware computes, run
in NumPy, stored in a bundle as integer.npz and integer.json like a network's (quant/integer.py).

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

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant.integer import FORMAT, LUT_ONE, read_files, tanh_table
from qsearch.quant.layers import int_range
from qsearch.quant.lut_actor import LUTActor

VERSION = 3  # quant/integer.py's format version that added these models


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

    recurrent = False

    @property
    def obs_dim(self) -> int:
        return len(self.obs_norm.mean)

    @property
    def act_dim(self) -> int:
        return len(self.head)

    @property
    def thermometer_bits(self) -> int:
        return len(self.thresholds)

    def layer_inputs(self) -> list[int]:
        """How many bits each layer reads from: the thermometer's, then the previous layer's."""
        return [self.obs_dim * self.thermometer_bits, *(len(l.tables) for l in self.layers[:-1])]

    def quantize_obs(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations -> thermometer levels: the integer observation of the C export's API."""
        return self.levels(self.obs_norm(obs))

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
        act_dim = self.act_dim
        counts = bits[:, : self.group * act_dim].reshape(len(bits), act_dim, self.group).sum(-1)
        outs += [counts, self.head[np.arange(act_dim), counts]]
        return outs

    def act(self, x_norm: np.ndarray) -> np.ndarray:
        """Normalized observations -> actions in [-1, 1] (the evaluator's policy interface)."""
        return self.action(self.run_int(self.levels(x_norm))[-1])

    def action(self, o: np.ndarray) -> np.ndarray:
        return self.tanh_lut[o - int_range(self.out_bits, True)[0]].astype(np.float32) / LUT_ONE

    def policy(self):
        """The evaluator's policy (rl/evaluate.py)."""
        return self.act

    # ---- storage: as IntegerModel's, plain .npz arrays and a .json description ----

    def save(self, folder: Path) -> None:
        arrays = {"obs_mean": self.obs_norm.mean, "obs_std": self.obs_norm.std, "thresholds": self.thresholds,
                  "head": self.head, "tanh_lut": self.tanh_lut}
        for i, layer in enumerate(self.layers):
            arrays[f"connections_{i}"], arrays[f"tables_{i}"] = layer.connections, layer.tables
        np.savez(folder / "integer.npz", **arrays)
        meta = {
            "format": FORMAT, "version": VERSION, "kind": "lut",
            "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "input": {"thermometer_bits": self.thermometer_bits,
                      "levels": "level = count(thresholds <= (obs - obs_mean) / obs_std), float32; NaN: 0"},
            "layers": [{"in": n_in, "out": len(l.tables), "lut_inputs": int(l.connections.shape[1])}
                       for n_in, l in zip(self.layer_inputs(), self.layers)],
            "bits": "the first layer's input bit f * thermometer_bits + i is level[f] > i",
            "lookup": "bit'[j] = tables[j, sum_l bit[connections[j, l]] * 2^l]",
            "head": {"group": self.group,
                     "rule": "count[a] = sum of the last layer's bits a * group .. (a + 1) * group - 1; "
                             "o[a] = head[a, count[a]]"},
            "output": {"bits": self.out_bits, "scale": self.output_scale,
                       "tanh_lut": f"action = tanh_lut[o + 2^(bits-1)] / {LUT_ONE}, then the env's action scale"},
        }
        (folder / "integer.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "IntLUTModel":
        try:
            meta, a = read_files(folder, "lut")
            layers = [LUTLayerInts(a[f"connections_{i}"], a[f"tables_{i}"]) for i in range(len(meta["layers"]))]
            return cls(ObsNorm(a["obs_mean"], a["obs_std"]), a["thresholds"], layers, meta["head"]["group"],
                       a["head"], meta["output"]["bits"], a["tanh_lut"], meta["output"]["scale"])
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise QsearchError(f"cannot read the integer model in {folder}: {e}") from None


def agreement(actor: LUTActor, model: IntLUTModel, episodes: list[np.ndarray]) -> float:
    """Share of observations whose output integers from the float32 training model equal the engine's
    (quant/integer.py's agreement for a LUT policy: the two differ only where float32 sums of the head
    round differently, which the tabulated head rules out, so anything below 1 is a bug)."""
    actor.eval()
    x = np.concatenate(episodes)
    with torch.no_grad():
        o_torch = actor.head(actor.counts(torch.from_numpy(np.asarray(x, np.float32)))).int().numpy()
    return float(np.mean(np.all(o_torch.astype(np.int64) == model.run_int(model.levels(x))[-1], axis=1)))


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
