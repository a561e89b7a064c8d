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

A recurrent model (format version 2) runs a GRU encoder (quant/gru.py) before the MLP, one step
per call, with its hidden state h (signed integers) carried by the caller:
  ax    = requantize(W_x x_int + b_x), ah = requantize(W_h h + b_h)   both to the gate grid
  r, z  = count(sigmoid_thresholds <= ax + ah)                         their r and z rows
  n     = q_min + count(tanh_thresholds <= ax_n * 2^g + r * ah_n)      g = the gates' bits
  h'    = round_half_even((n * 2^g + z * (h - n)) / 2^g)               n + z (h - n), exactly
and the MLP takes h'. The gate and state scales are powers of two, so each line is the exact integer
form of the QAT model's float arithmetic; the two tables are counted from brevitas' own float64
sigmoid and tanh quantizers evaluated at every integer they can be given.

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
from qsearch.quant.gru import PRE_BITS
from qsearch.quant.layers import int_range
from qsearch.policy import Recurrent

FORMAT = "qsearch-integer-model"
# The highest version this qsearch reads: 2 added the recurrent encoder, 3 the logic-circuit models of
# quant/lut_integer.py. A file states the lowest version that describes it, so an MLP's or a GRU's
# integer.json is a version 2 file, byte for byte what it was before version 3.
VERSION = 3
MLP_VERSION = 2
ENCODER_PARTS = ("ax", "ah", "r", "z", "n", "h")  # a recurrent model's run_int: [x, *these, MLP..., o]
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
class IntGRU:
    """A recurrent model's encoder (see the module's docstring)."""

    x: IntLayer  # W_x x + b_x, requantized to the gate grid (signed bits)
    h: IntLayer  # W_h h + b_h, likewise
    sigmoid: np.ndarray  # thresholds over ax + ah -> r, z (unsigned bits), increasing
    tanh: np.ndarray  # thresholds over ax_n * 2^bits + r * ah_n -> n (signed bits), increasing
    bits: int  # the gates' and the state's

    @property
    def width(self) -> int:
        return self.h.weight.shape[1]

    @property
    def state_min(self) -> int:
        """The smallest state (and n) integer: signed `bits`."""
        return int_range(self.bits, True)[0]

    def step(self, x_int: np.ndarray, h: np.ndarray) -> list[np.ndarray]:
        """(n, in) inputs and (n, width) states -> [ax, ah, r, z, n, h'] (ENCODER_PARTS)."""
        w, b = self.width, self.bits
        ax, ah = _requantize(self.x, x_int), _requantize(self.h, h)
        rz = np.searchsorted(self.sigmoid, (ax + ah)[:, : 2 * w].ravel(), side="right").reshape(-1, 2 * w)
        r, z = rz[:, :w].astype(np.int64), rz[:, w:].astype(np.int64)
        u = (ax[:, 2 * w:] << b) + r * ah[:, 2 * w:]
        n = np.searchsorted(self.tanh, u.ravel(), side="right").reshape(u.shape).astype(np.int64) + self.state_min
        return [ax, ah, r, z, n, _round_half_even_shift((n << b) + z * (h - n), b)]


def _requantize(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    acc = x @ layer.weight.T.astype(np.int64) + layer.bias
    return np.searchsorted(layer.thresholds, acc.ravel(), side="right").reshape(acc.shape).astype(np.int64) + layer.out_min


def _round_half_even_shift(w: np.ndarray, bits: int) -> np.ndarray:
    """rint(w / 2^bits) with ties to even, in integers (what torch.round does to the exact quotient)."""
    q = w >> bits  # floor
    rem = w - (q << bits)
    half = 1 << (bits - 1)
    return q + ((rem > half) | ((rem == half) & (q & 1 == 1)))


@dataclass
class IntegerModel:
    obs_norm: ObsNorm
    input_scale: np.float32
    input_bits: int
    layers: list[IntLayer]
    tanh_lut: np.ndarray  # (2**out_bits,) int16, indexed by o - q_min
    output_scale: float  # float scale of the output integer, documentation and checks only
    encoder: IntGRU | None = None  # a recurrent model's GRU

    @property
    def recurrent(self) -> bool:
        return self.encoder is not None

    @property
    def obs_dim(self) -> int:
        return (self.encoder.x if self.recurrent else self.layers[0]).weight.shape[1]

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

    def run_int(self, x_int: np.ndarray, state: np.ndarray | None = None) -> list[np.ndarray]:
        """Integer input -> every quantizer's integer output: [x_int, h_1, ..., h_depth, o]. A recurrent
        model takes its state too (initial_state at an episode's start) and returns
        [x_int, ax, ah, r, z, n, h', h_1, ..., o]: h' (`next_state`) is the next step's state."""
        outs = [np.asarray(x_int, np.int64)]
        if self.recurrent:
            if state is None:
                raise QsearchError("a recurrent integer model needs its state (initial_state at an episode's start)")
            outs += self.encoder.step(outs[0], np.asarray(state, np.int64))
        for layer in self.layers:
            outs.append(_requantize(layer, outs[-1]))
        return outs

    def initial_state(self, n: int) -> np.ndarray:
        """A recurrent model's state at an episode's start: zero."""
        return np.zeros((n, self.encoder.width), np.int64)

    @staticmethod
    def next_state(outs: list[np.ndarray]) -> np.ndarray:
        """The new state in a recurrent model's run_int outputs."""
        return outs[1 + ENCODER_PARTS.index("h")]

    def act(self, x_norm: np.ndarray) -> np.ndarray:
        """Normalized observations -> actions in [-1, 1] (the evaluator's policy interface). Stateless
        models only: a recurrent one acts through `policy`."""
        return self.action(self.run_int(self.quantize_normalized(x_norm))[-1])

    def action(self, o: np.ndarray) -> np.ndarray:
        """Output integers -> actions in [-1, 1], through the tanh table."""
        return self.tanh_lut[o - self.layers[-1].out_min].astype(np.float32) / LUT_ONE

    def policy(self):
        """The evaluator's policy: `act`, or for a recurrent model one that carries the state (rl/evaluate.py)."""
        if not self.recurrent:
            return self.act

        def step(x_norm, state):
            outs = self.run_int(self.quantize_normalized(x_norm), state)
            return self.action(outs[-1]), self.next_state(outs)

        return Recurrent(step, self.initial_state)

    # ---- storage: plain .npz arrays and a .json description, no pickle ----

    def save(self, folder: Path) -> None:
        arrays = {
            "obs_mean": self.obs_norm.mean, "obs_std": self.obs_norm.std,
            "input_scale": np.array([self.input_scale], np.float32), "tanh_lut": self.tanh_lut,
        }
        named = dict(enumerate(self.layers))
        if self.recurrent:
            named |= {"encoder_x": self.encoder.x, "encoder_h": self.encoder.h}
            arrays |= {"encoder_sigmoid": self.encoder.sigmoid, "encoder_tanh": self.encoder.tanh}
        for i, layer in named.items():
            arrays[f"weight_{i}"], arrays[f"bias_{i}"], arrays[f"thresholds_{i}"] = (
                layer.weight, layer.bias, layer.thresholds)
        np.savez(folder / "integer.npz", **arrays)
        meta = {
            "format": FORMAT, "version": MLP_VERSION,
            "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "input": {"bits": self.input_bits, "signed": True, "scale": float(self.input_scale),
                      "quantize": "x_int = clip(rint(((obs - obs_mean) / obs_std) / input_scale)), float32"},
            "encoder": None if not self.recurrent else {
                "kind": "gru", "width": self.encoder.width, "bits": self.encoder.bits,
                "x": _layer_meta(self.encoder.x), "h": _layer_meta(self.encoder.h),
                "step": ["ax = requantize(W_x x + b_x), ah = requantize(W_h h + b_h)  (rows r, z, n)",
                         "r, z = count(encoder_sigmoid <= ax + ah)",
                         "n = -2^(bits-1) + count(encoder_tanh <= ax_n * 2^bits + r * ah_n)",
                         "h' = round_half_even((n * 2^bits + z * (h - n)) / 2^bits); the MLP takes h'",
                         "h = 0 at an episode's start"]},
            "layers": [_layer_meta(l) for l in self.layers],
            "requantize": "out = out_min + count(thresholds <= W @ h + bias)",
            "output": {"bits": self.layers[-1].out_bits, "scale": self.output_scale,
                       "tanh_lut": f"action = tanh_lut[o - out_min] / {LUT_ONE}, then the env's action scale"},
        }
        (folder / "integer.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "IntegerModel":
        try:
            meta, a = read_files(folder, "mlp")
            layers = [_layer(a, i, m) for i, m in enumerate(meta["layers"])]
            encoder = None
            if (e := meta.get("encoder")) is not None:
                encoder = IntGRU(_layer(a, "encoder_x", e["x"]), _layer(a, "encoder_h", e["h"]),
                                 a["encoder_sigmoid"], a["encoder_tanh"], e["bits"])
            return cls(ObsNorm(a["obs_mean"], a["obs_std"]), np.float32(a["input_scale"][0]),
                       meta["input"]["bits"], layers, a["tanh_lut"], meta["output"]["scale"], encoder)
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise QsearchError(f"cannot read the integer model in {folder}: {e}") from None


WHOSE = {"mlp": "a network's", "lut": "a logic circuit's"}  # a model kind, and the module that reads it
READER = {"mlp": "quant/integer.py", "lut": "quant/lut_integer.py"}


def read_files(folder: Path, kind: str) -> tuple[dict, dict]:
    """integer.json and the arrays of integer.npz, for a model of `kind` (mlp or lut): a foreign file,
    a newer version or the other kind is refused in one line. The caller turns the read errors
    (OSError, KeyError, ValueError, TypeError) into one line too."""
    path = folder / "integer.json"
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise QsearchError(f"{path} is not a qsearch integer model")
    if meta.get("version", 1) > VERSION:
        raise QsearchError(f"{path} is a version {meta['version']} integer model; this qsearch reads up to version {VERSION}")
    if (found := meta.get("kind", "mlp")) != kind:
        raise QsearchError(f"{path} holds a {found} model, not {WHOSE[kind]} ({READER[found]} reads it)")
    with np.load(folder / "integer.npz", allow_pickle=False) as z:
        return meta, {k: z[k] for k in z.files}


def _layer_meta(l: IntLayer) -> dict:
    return {"in": int(l.weight.shape[1]), "out": int(l.weight.shape[0]), "weight_bits": l.weight_bits,
            "in_bits": l.in_bits, "in_signed": l.in_signed, "out_bits": l.out_bits,
            "out_signed": l.out_signed, "acc_bits": l.acc_bits, "thresholds": int(l.thresholds.size)}


def _layer(a: dict, name, m: dict) -> IntLayer:
    return IntLayer(a[f"weight_{name}"], a[f"bias_{name}"], a[f"thresholds_{name}"], m["out_bits"], m["out_signed"],
                    m["in_bits"], m["in_signed"], m["weight_bits"], m["acc_bits"])


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
        # eval mode: scales are fixed, independent of the probe
        qts = ref.quant_step(probe, ref.initial_state(1, torch.float64))[1] if actor.recurrent else ref.quant_forward(probe)
        scales = [t.scale for t in qts]  # input, hidden activations, output (float64 tensors)
        input_scale = np.float32(actor.inp(probe.float()).scale)
        bits = [(q.bits_in, True)] + [(q.bits_act, False)] * actor.cfg.depth + [(q.bits_out, True)]
        encoder = None
        if actor.recurrent:
            encoder = _extract_gru(ref.encoder, scales[0], q)
            # the MLP takes the hidden state
            scales[0], bits[0] = ref.encoder.state(ref.initial_state(1, torch.float64)).scale, (q.bits_act, True)
        layers = [_int_layer(f"layer {i}", lin, scales[i], scales[i + 1], bits[i], bits[i + 1], q.bits_weight)
                  for i, lin in enumerate(ref.linears)]
    lut = tanh_table(q.bits_out, float(scales[-1]))
    return IntegerModel(obs_norm, input_scale, q.bits_in, layers, lut, float(scales[-1]), encoder)


def tanh_table(bits_out: int, scale: float) -> np.ndarray:
    """tanh of every output level (signed bits_out, this scale), Q1.15, indexed by o - q_min."""
    lo, hi = int_range(bits_out, True)
    levels = np.arange(lo, hi + 1, dtype=np.float64) * scale
    return np.clip(np.rint(np.tanh(levels) * LUT_ONE), -LUT_ONE, LUT_ONE).astype(np.int16)


def _int_layer(name: str, lin, in_scale, out_scale, in_type, out_type, weight_bits: int) -> IntLayer:
    """A QuantLinear of the float64 reference copy, its output requantized from in_scale * weight scale
    to out_scale (float64 tensors)."""
    qw = lin.quant_weight()
    w_int = qw.int().numpy().astype(np.int8)
    # Int32Bias: bias integer at the accumulator scale, computed as brevitas does.
    acc_scale = qw.scale * in_scale
    b_int = torch.clamp(torch.round(lin.bias / acc_scale), -(2**31), 2**31 - 1).numpy().astype(np.int64)
    (in_bits, in_signed), (out_bits, out_signed) = in_type, out_type
    bound = _acc_bound(w_int.shape[1], in_bits, in_signed, weight_bits, b_int)
    acc_bits = bound.bit_length() + 1
    if acc_bits > ENGINE_ACC_BITS:
        raise QsearchError(f"{name} needs a {acc_bits}-bit accumulator; the engine has {ENGINE_ACC_BITS}")
    r = Fraction(float(in_scale)) * Fraction(float(qw.scale)) / Fraction(float(out_scale))
    thresholds = _round_half_even_thresholds(r, *int_range(out_bits, out_signed), bound)
    return IntLayer(w_int, b_int, thresholds, out_bits, out_signed, in_bits, in_signed, weight_bits, acc_bits)


def _extract_gru(enc, x_scale, q) -> IntGRU:
    """The encoder of the float64 reference copy: its two products and its gate tables, counted from
    brevitas' own float64 QuantSigmoid and QuantTanh at every integer they can be given."""
    s, b = enc.scales(), q.bits_act
    pre = (PRE_BITS, True)
    x = _int_layer("the encoder's input product", enc.lin_x, x_scale, s["pre"], (q.bits_in, True), pre, q.bits_weight)
    h = _int_layer("the encoder's state product", enc.lin_h, s["state"], s["pre"], (b, True), pre, q.bits_weight)
    lo, hi = int_range(*pre)
    v = np.arange(2 * lo, 2 * hi + 1)  # ax + ah
    sigmoid = _table_thresholds(v, enc.sigmoid(torch.from_numpy(v * s["pre"])).int().numpy(), *int_range(b, False))
    g = 2**b - 1  # the largest r
    u = np.arange(lo * 2**b + g * lo, hi * 2**b + g * hi + 1)  # ax_n * 2^b + r * ah_n
    tanh = _table_thresholds(u, enc.tanh(torch.from_numpy(u * (s["pre"] / 2**b))).int().numpy(), *int_range(b, True))
    return IntGRU(x, h, sigmoid, tanh, b)


def _table_thresholds(v: np.ndarray, q: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Thresholds for a nondecreasing table q over the consecutive integers v: for each level k in
    (lo, hi], the first v with q(v) >= k (one past the end if none), so q(v) = lo + count(T <= v)."""
    q = q.astype(np.int64)
    if np.any(np.diff(q) < 0):
        raise QsearchError("a gate table of the encoder is not monotone; its integer form would be wrong")
    return np.array([v[np.argmax(q >= k)] if q[-1] >= k else v[-1] + 1 for k in range(lo + 1, hi + 1)], np.int64)


def reference_ints(actor: QuantActor, model: IntegerModel, x_norm: np.ndarray,
                   state: np.ndarray | None = None) -> list[np.ndarray]:
    """The QAT model's quantized forward pass, as integers after every quantizer, in run_int's order
    (a recurrent model's from `state`, its integers).

    The input is quantized with float32 operations (what brevitas' float32 input quantizer does and
    what a device does); its dequantized value x_int * s_in is then fed to the float64 copy, whose
    input quantizer reproduces x_int exactly, and brevitas computes the rest."""
    return _reference_ints(reference_actor(actor), model, x_norm, state)


def reference_sequence(actor: QuantActor, model: IntegerModel, xs: np.ndarray) -> list[list[np.ndarray]]:
    """A recurrent model's reference_ints over the steps of xs (T, n, obs_dim) from the initial state,
    each step taking the reference's own new state."""
    ref, state, out = reference_actor(actor), model.initial_state(xs.shape[1]), []
    for x in xs:
        out.append(_reference_ints(ref, model, x, state))
        state = model.next_state(out[-1])
    return out


def _reference_ints(ref: QuantActor, model: IntegerModel, x_norm, state) -> list[np.ndarray]:
    x_int = model.quantize_normalized(x_norm)
    with torch.no_grad():
        x_deq = torch.from_numpy(x_int.astype(np.float64)) * float(model.input_scale)
        if not ref.recurrent:
            return [t.int().numpy().astype(np.int64) for t in ref.quant_forward(x_deq)]
        s = ref.encoder.scales()
        grid = {"ax": s["pre"], "ah": s["pre"], "r": s["gate"], "z": s["gate"], "n": s["state"], "h": s["state"]}
        parts, qts = ref.quant_step(x_deq, torch.from_numpy(state * s["state"]))
        encoder = [torch.round(parts[k] / grid[k]).numpy().astype(np.int64) for k in ENCODER_PARTS]  # exact: on the grid
        return [qts[0].int().numpy().astype(np.int64), *encoder, *(t.int().numpy().astype(np.int64) for t in qts[1:])]


def agreement(actor: QuantActor, model: IntegerModel, episodes: list[np.ndarray]) -> float:
    """Share of steps whose integer output from the float32 training model equals the engine's, over
    episodes of normalized observations (T, obs_dim). A recurrent model runs each episode from the
    initial state, the two models each carrying their own state (one differing rounding carries on)."""
    actor.eval()
    with torch.no_grad():
        if not model.recurrent:
            x = np.concatenate(episodes)
            o_torch = actor.quant_forward(torch.from_numpy(np.asarray(x, np.float32)))[-1].int().numpy()
            return float(np.mean(np.all(o_torch.astype(np.int64) == model.run_int(model.quantize_normalized(x))[-1], axis=1)))
        equal = []
        for ep in episodes:
            # the fast path's float32 forward is brevitas' to the bit (tests/test_gru.py)
            means = actor.sequence(torch.from_numpy(np.asarray(ep, np.float32))[None])[0][0].double().numpy()
            o_torch = np.rint(means / model.output_scale).astype(np.int64)
            state = model.initial_state(1)
            for x, o in zip(ep, o_torch):
                outs = model.run_int(model.quantize_normalized(x[None]), state)
                state = model.next_state(outs)
                equal.append(np.array_equal(outs[-1][0], o))
        return float(np.mean(equal))
