"""Integer-only inference (paper Section 2.3): extract an integer model from a QAT actor, run it in NumPy.

The deployed computation, layer by layer:
  x_int = clip(rint(((obs - mean) / std) / s_in), q_min, q_max)   float32: the only floating-point step;
                                                                    a NaN entry gives 0
  acc   = W_int @ h + b_int                                         integers, width checked below
  h'    = number of thresholds T_k with T_k <= acc                  hidden: unsigned, ReLU included
  o     = q_min + number of thresholds T_k <= acc                   output: signed, bits_out
  a     = tanh_lut[o - q_min] / LUT_ONE                             tanh as a lookup table (Q1.15)

Requantization uses thresholds, as FINN does. Level k is reached when acc * r >= k - 1/2 with
r = s_in_layer * s_w / s_out_layer, rounding ties to even as torch.round does; the thresholds are
computed exactly in rational arithmetic from the model's scales, so no float enters at run time.

The reference the engine is checked against is the QAT model's own quantized forward pass run in
float64 (`reference_ints`): in float64 every dequantized value x_int * s is exact, so brevitas'
result differs from exact arithmetic by ~1e-16 relative, far below any realistic distance to a tie.
The float32 training model can disagree with both on activations that lie within float32 rounding
(~1e-7 relative) of a tie; `agreement` measures how often that happens.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant.actor import QuantActor
from qsearch.quant.fastpath import int_range

FORMAT = "qsearch-integer-model"
VERSION = 1
LUT_ONE = 32767  # tanh table entries are Q1.15: action = entry / 32767
ENGINE_ACC_BITS = 63  # NumPy runs the accumulators in int64


@dataclass
class IntLayer:
    weight: np.ndarray  # (out, in) int8
    bias: np.ndarray  # (out,) int64, at the accumulator scale
    thresholds: np.ndarray  # (levels - 1,) int64, increasing
    out_bits: int
    out_signed: bool
    in_bits: int
    in_signed: bool
    weight_bits: int
    acc_bits: int  # signed accumulator width that holds every reachable acc

    @property
    def out_min(self) -> int:
        return int_range(self.out_bits, self.out_signed)[0]


@dataclass
class IntegerModel:
    obs_norm: ObsNorm
    input_scale: np.float32
    input_bits: int
    layers: list[IntLayer]
    tanh_lut: np.ndarray  # (2**out_bits,) int16, indexed by o - q_min
    output_scale: float  # float scale of the output integer, documentation and checks only

    @property
    def obs_dim(self) -> int:
        return self.layers[0].weight.shape[1]

    @property
    def act_dim(self) -> int:
        return self.layers[-1].weight.shape[0]

    def quantize_obs(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations -> input integers. Same float32 operations as brevitas' input quantizer."""
        return self.quantize_normalized(self.obs_norm(obs))

    def quantize_normalized(self, x: np.ndarray) -> np.ndarray:
        lo, hi = int_range(self.input_bits, True)
        y = np.asarray(x, np.float32) / self.input_scale
        # A NaN entry (a failed sensor) maps to 0, the normalized mean, as in the C engine: cast as it
        # is, NaN would become INT64_MIN and the actions garbage.
        y = np.where(np.isnan(y), np.float32(0), y)
        return np.clip(np.rint(y), lo, hi).astype(np.int64)

    def run_int(self, x_int: np.ndarray) -> list[np.ndarray]:
        """Integer input -> every layer's integer output: [x_int, h_1, ..., h_depth, o]."""
        outs = [np.asarray(x_int, np.int64)]
        for layer in self.layers:
            acc = outs[-1] @ layer.weight.T.astype(np.int64) + layer.bias
            level = np.searchsorted(layer.thresholds, acc.ravel(), side="right").reshape(acc.shape)
            outs.append(level.astype(np.int64) + layer.out_min)
        return outs

    def act(self, x_norm: np.ndarray) -> np.ndarray:
        """Normalized observations -> actions in [-1, 1] (the evaluator's policy interface)."""
        o = self.run_int(self.quantize_normalized(x_norm))[-1]
        return self.tanh_lut[o - self.layers[-1].out_min].astype(np.float32) / LUT_ONE

    # ---- storage: plain .npz arrays and a .json description, no pickle ----

    def save(self, folder: Path) -> None:
        arrays = {
            "obs_mean": self.obs_norm.mean, "obs_std": self.obs_norm.std,
            "input_scale": np.array([self.input_scale], np.float32), "tanh_lut": self.tanh_lut,
        }
        for i, layer in enumerate(self.layers):
            arrays[f"weight_{i}"], arrays[f"bias_{i}"], arrays[f"thresholds_{i}"] = (
                layer.weight, layer.bias, layer.thresholds)
        np.savez(folder / "integer.npz", **arrays)
        meta = {
            "format": FORMAT, "version": VERSION,
            "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "input": {"bits": self.input_bits, "signed": True, "scale": float(self.input_scale),
                      "quantize": "x_int = clip(rint(((obs - obs_mean) / obs_std) / input_scale)), float32"},
            "layers": [
                {"in": int(l.weight.shape[1]), "out": int(l.weight.shape[0]), "weight_bits": l.weight_bits,
                 "in_bits": l.in_bits, "in_signed": l.in_signed, "out_bits": l.out_bits,
                 "out_signed": l.out_signed, "acc_bits": l.acc_bits, "thresholds": int(l.thresholds.size)}
                for l in self.layers
            ],
            "requantize": "out = out_min + count(thresholds <= W @ h + bias)",
            "output": {"bits": self.layers[-1].out_bits, "scale": self.output_scale,
                       "tanh_lut": f"action = tanh_lut[o - out_min] / {LUT_ONE}, then the env's action scale"},
        }
        (folder / "integer.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "IntegerModel":
        try:
            meta = json.loads((folder / "integer.json").read_text())
            if meta.get("format") != FORMAT:
                raise QsearchError(f"{folder / 'integer.json'} is not a qsearch integer model")
            with np.load(folder / "integer.npz", allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            layers = [
                IntLayer(a[f"weight_{i}"], a[f"bias_{i}"], a[f"thresholds_{i}"], m["out_bits"], m["out_signed"],
                         m["in_bits"], m["in_signed"], m["weight_bits"], m["acc_bits"])
                for i, m in enumerate(meta["layers"])
            ]
            return cls(ObsNorm(a["obs_mean"], a["obs_std"]), np.float32(a["input_scale"][0]),
                       meta["input"]["bits"], layers, a["tanh_lut"], meta["output"]["scale"])
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise QsearchError(f"cannot read the integer model in {folder}: {e}") from None


# ---- extraction ----

def _round_half_even_thresholds(r: Fraction, lo: int, hi: int, acc_bound: int) -> np.ndarray:
    """Smallest acc reaching each level k in (lo, hi], i.e. rint(acc * r) >= k with ties to even.

    Clipped to +-(acc_bound + 1): a threshold beyond every reachable accumulator acts the same."""
    out = []
    for k in range(lo + 1, hi + 1):
        t = (Fraction(2 * k - 1, 2)) / r  # acc * r >= k - 1/2  <=>  acc >= t
        if k % 2 == 0:  # the tie k - 1/2 rounds up to even k: inclusive
            first = math.ceil(t)
        else:  # the tie rounds down to even k - 1: strictly above
            first = math.floor(t) + 1
        out.append(min(max(first, -acc_bound - 1), acc_bound + 1))
    return np.array(out, np.int64)


def _acc_bound(fan_in: int, in_bits: int, in_signed: bool, weight_bits: int, bias: np.ndarray) -> int:
    """Largest |acc| any input can produce, from the bit widths and the integer biases."""
    in_lo, in_hi = int_range(in_bits, in_signed)
    w_lo, _ = int_range(weight_bits, True)
    return fan_in * max(-in_lo, in_hi) * (-w_lo) + int(np.abs(bias).max(initial=0))


def reference_actor(actor: QuantActor) -> QuantActor:
    """A float64 eval-mode copy of the actor: the exact quantized forward the engine reproduces."""
    return copy.deepcopy(actor).double().eval()


def extract(actor: QuantActor, obs_norm: ObsNorm) -> IntegerModel:
    """Integer weights, biases and thresholds from a QAT actor, with overflow-checked accumulators."""
    if not actor.quantized:
        raise QsearchError("an FP32 policy has no integer model; train with quantization")
    q = actor.cfg.quant
    ref = reference_actor(actor)
    with torch.no_grad():
        probe = torch.zeros(1, actor.obs_dim, dtype=torch.float64)
        qts = ref.quant_forward(probe)  # eval mode: scales are fixed, independent of the probe
        scales = [float(t.scale) for t in qts]  # input, hidden activations, output
        input_scale = np.float32(actor.quant_forward(probe.float())[0].scale)
        layers = []
        bits = [(q.bits_in, True)] + [(q.bits_act, False)] * actor.cfg.depth + [(q.bits_out, True)]
        for i, lin in enumerate(ref.linears):
            qw = lin.quant_weight()
            w_int = qw.int().numpy().astype(np.int8)
            w_scale = float(qw.scale)
            # Int32Bias: bias integer at the accumulator scale, computed as brevitas does.
            acc_scale = qw.scale * qts[i].scale
            b_int = torch.clamp(torch.round(lin.bias / acc_scale), -(2**31), 2**31 - 1).numpy().astype(np.int64)
            (in_bits, in_signed), (out_bits, out_signed) = bits[i], bits[i + 1]
            bound = _acc_bound(w_int.shape[1], in_bits, in_signed, q.bits_weight, b_int)
            acc_bits = bound.bit_length() + 1
            if acc_bits > ENGINE_ACC_BITS:
                raise QsearchError(f"layer {i} needs a {acc_bits}-bit accumulator; the engine has {ENGINE_ACC_BITS}")
            r = Fraction(scales[i]) * Fraction(w_scale) / Fraction(scales[i + 1])
            lo, hi = int_range(out_bits, out_signed)
            thresholds = _round_half_even_thresholds(r, lo, hi, bound)
            layers.append(IntLayer(w_int, b_int, thresholds, out_bits, out_signed, in_bits, in_signed,
                                   q.bits_weight, acc_bits))
    lo, hi = int_range(q.bits_out, True)
    levels = np.arange(lo, hi + 1, dtype=np.float64) * scales[-1]
    lut = np.clip(np.rint(np.tanh(levels) * LUT_ONE), -LUT_ONE, LUT_ONE).astype(np.int16)
    return IntegerModel(obs_norm, input_scale, q.bits_in, layers, lut, scales[-1])


def reference_ints(actor: QuantActor, model: IntegerModel, x_norm: np.ndarray) -> list[np.ndarray]:
    """The QAT model's quantized forward pass, as integers after every quantizer.

    The input is quantized with float32 operations (what brevitas' float32 input quantizer does and
    what a device does); its dequantized value x_int * s_in is then fed to the float64 copy, whose
    input quantizer reproduces x_int exactly, and brevitas computes the rest."""
    x_int = model.quantize_normalized(x_norm)
    ref = reference_actor(actor)
    with torch.no_grad():
        x_deq = torch.from_numpy(x_int.astype(np.float64)) * float(model.input_scale)
        return [t.int().numpy().astype(np.int64) for t in ref.quant_forward(x_deq)]


def agreement(actor: QuantActor, model: IntegerModel, x_norm: np.ndarray) -> float:
    """Share of observations whose integer output from the float32 training model equals the engine's."""
    with torch.no_grad():
        o_torch = actor.eval().quant_forward(torch.from_numpy(np.asarray(x_norm, np.float32)))[-1].int().numpy()
    o_int = model.run_int(model.quantize_normalized(x_norm))[-1]
    return float(np.mean(np.all(o_torch.astype(np.int64) == o_int, axis=1)))
