"""Test observations for the RTL, and what the integer engine answers to them.

The RTL takes input integers (the float quantization stays outside), so the vectors are integers:
the extremes (every input at its minimum, maximum, zero, alternating), observations quantized from
floats lying exactly on rounding ties of the input scale, inputs steered so that first-layer
accumulators land exactly on a threshold and one below it (the edges of requantization), and random
integers over the whole input range.
"""
from __future__ import annotations

import numpy as np

from qsearch.quant.layers import int_range
from qsearch.quant.integer import IntegerModel
from qsearch.quant.lut_integer import IntLUTModel


def inputs(model: IntegerModel | IntLUTModel, n: int, seed: int = 0) -> np.ndarray:
    """n input-integer vectors (n, obs_dim), int64: edges first, then random ones."""
    rng = np.random.default_rng(seed)
    if isinstance(model, IntLUTModel):
        return _levels(model, n, rng)
    lo, hi = int_range(model.input_bits, True)
    d = model.obs_dim
    edges = [np.full(d, lo), np.full(d, hi), np.zeros(d, np.int64),
             np.where(np.arange(d) % 2, lo, hi), np.where(np.arange(d) % 2, hi, lo)]
    edges += list(_rounding_ties(model, rng, 8))
    edges += list(_threshold_edges(model, rng, max(0, n // 4)))
    edges = np.array(edges, np.int64)[:n]
    rest = rng.integers(lo, hi + 1, (n - len(edges), d))
    return np.concatenate([edges, rest]).astype(np.int64)


def _levels(model: IntLUTModel, n: int, rng) -> np.ndarray:
    """Thermometer levels (n, obs_dim): the edges 0 and B, then levels of N(0, 1.5) observations and
    uniform ones, half each."""
    d, top = model.obs_dim, model.thermometer_bits
    one = np.eye(d, dtype=np.int64)
    alternating = np.arange(d) % 2
    edges = np.concatenate([[np.zeros(d, np.int64), np.full(d, top), top * alternating, top * (1 - alternating)],
                            top * one, top * (1 - one)])[:n]
    m = n - len(edges)
    observed = model.levels(rng.normal(0.0, 1.5, (m // 2, d)).astype(np.float32))
    uniform = rng.integers(0, top + 1, (m - m // 2, d))
    return np.concatenate([edges, observed, uniform]).astype(np.int64)


def expected(model: IntegerModel | IntLUTModel, x: np.ndarray) -> np.ndarray:
    """The integer engine's outputs (n, act_dim): the reference the RTL must equal bit for bit."""
    return model.run_int(x)[-1]


def _rounding_ties(model: IntegerModel, rng, n: int) -> np.ndarray:
    """Normalized observations at (k + 1/2) * input_scale, quantized as the device's input stage does."""
    lo, hi = int_range(model.input_bits, True)
    k = rng.integers(lo - 1, hi + 1, (n, model.obs_dim))
    x = (k.astype(np.float32) + np.float32(0.5)) * model.input_scale
    return model.quantize_normalized(x)


def _threshold_edges(model: IntegerModel, rng, n: int) -> list[np.ndarray]:
    """Inputs putting a first-layer accumulator exactly on one of its thresholds, or one below.

    A random start, then greedy moves of single inputs towards the target: cheap and exact often
    enough for the small layers here; misses are simply not returned."""
    layer = model.layers[0]
    lo, hi = int_range(model.input_bits, True)
    w = layer.weight.astype(np.int64)
    out = []
    for _ in range(4 * n):
        if len(out) >= n:
            break
        j = rng.integers(w.shape[0])
        nz = np.flatnonzero(w[j])
        if not nz.size:
            continue
        target = int(rng.choice(layer.thresholds)) - int(rng.integers(2))
        x = rng.integers(lo, hi + 1, model.obs_dim)
        for _ in range(8 * nz.size):
            gap = target - int(w[j] @ x + layer.bias[j])
            if gap == 0:
                out.append(x.copy())
                break
            k = rng.choice(nz)
            step = int(np.clip(x[k] + round(gap / w[j, k]), lo, hi)) - x[k]
            if step == 0:
                step = int(np.clip(x[k] + np.sign(gap * w[j, k]), lo, hi)) - x[k]
            x[k] += step
    return out


def pack(values: np.ndarray, bits: int) -> list[int]:
    """Rows of integers as one integer each: element i at bits [i*bits +: bits], two's complement."""
    mask = (1 << bits) - 1
    out = []
    for row in np.asarray(values, np.int64).tolist():
        v = 0
        for i, e in enumerate(row):
            v |= (e & mask) << (i * bits)
        out.append(v)
    return out


def hex_lines(values: np.ndarray, bits: int) -> str:
    """A $readmemh file: one packed vector per line."""
    digits = -(-values.shape[1] * bits // 4)
    return "".join(f"{v:0{digits}x}\n" for v in pack(values, bits))
