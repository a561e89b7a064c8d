"""A fused forward for the QAT actor, used after the activation-scale warm-up.

Why this exists: brevitas' eager forward makes ~270 nested module calls per actor forward. Measured
here (256-wide actor, one thread): a batch-1 forward costs ~10 ms against 0.13 ms in FP32, and an
update step 26 ms against 7 ms, which halves a SAC run's steps/s. torch.compile does not help (11 graph
breaks in brevitas' proxies, ~60 s of compiling, no speed-up).

So after the warm-up, when every activation scale has become a plain learned parameter, the actor
runs this flat function on brevitas' own parameters: the scales as brevitas derives them (abs-max of
the weights, |learned value| / q_s, with brevitas' scalar_clamp_min_ste), and each quantize/de-quantize
as one autograd node (_QDQ) with brevitas' forward operations and the gradient of brevitas' graph.
Without gradients the quantized weights are cached between optimizer steps. The brevitas
modules stay the source of truth: they hold the parameters, run the warm-up, export to QONNX and give
the integer weights. tests/test_fastpath.py checks that outputs are bitwise equal to brevitas' forward
and gradients equal, so any drift in a brevitas upgrade fails the tests rather than training silently.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from brevitas.function.ops_ste import scalar_clamp_min_ste

SCALING_MIN_VAL = 1e-10  # brevitas' scaling_min_val for the quantizers the actor uses
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """[q_min, q_max] of the paper's eq. (1), non-narrow."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def int_scale(bits: int, signed: bool) -> int:
    """q_s = max(|q_min|, |q_max|)."""
    lo, hi = int_range(bits, signed)
    return max(-lo, hi)


def scaling_impl(act_layer):
    return act_layer.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl


def ready(actor) -> bool:
    """True once every activation quantizer has left its statistics warm-up."""
    return all(
        scaling_impl(q).counter > scaling_impl(q).collect_stats_steps for q in actor.act_quantizers()
    )


class _QDQ(torch.autograd.Function):
    """clamp(round(x / s), lo, hi) * s in one autograd node: brevitas' forward ops, in its order, and
    the gradient its graph of round_ste, clamp and the two scalings gives, written out:

        y = x / s, c = clamp(round(y)), inside = (lo <= round(y) <= hi)
        activations (TensorClamp):   dx = g * inside,  ds = sum(g * (c - y * inside))
        weights (TensorClampSte):    dx = g,           ds = sum(g * (c - y))

    Autograd records ~10 kernels for the same thing; this halves the quantizers' cost in an update.
    brevitas' `+ zero_point` (0.0) is left out, which changes only the sign of a zero."""

    @staticmethod
    def forward(ctx, x, scale, lo: int, hi: int, ste_clamp: bool):
        y = x / scale
        r = torch.round(y)
        c = torch.clamp(r, lo, hi)
        ctx.ste_clamp = ste_clamp
        ctx.save_for_backward(y, c, None if ste_clamp else (r == c))
        return c * scale

    @staticmethod
    def backward(ctx, g):
        y, c, inside = ctx.saved_tensors
        if ctx.ste_clamp:
            return g, (g * (c - y)).sum().reshape(()), None, None, None
        g_in = g * inside
        return g_in, (g * c - g_in * y).sum().reshape(()), None, None, None


def _qdq(x, scale, lo: int, hi: int, ste_clamp: bool):
    if torch.is_grad_enabled():
        return _QDQ.apply(x, scale, lo, hi, ste_clamp)
    return (x / scale).round_().clamp_(lo, hi).mul_(scale)  # the same values, nothing kept for backward


def _qdq_act(x, scale, lo: int, hi: int):
    return _qdq(x, scale, lo, hi, False)


def _qdq_weight(w, scale, lo: int, hi: int):
    return _qdq(w, scale, lo, hi, True)


def _act_scale(layer, bits, signed):
    """QuantIdentity / QuantReLU after warm-up: the learned scale |value| / q_s."""
    value = scalar_clamp_min_ste(torch.abs(scaling_impl(layer).value), SCALING_MIN_VAL)
    return value / float(int_scale(bits, signed))


def _act(x, scale, bits, signed):
    return _qdq_act(x, scale, *int_range(bits, signed))


def _linear_params(lin, x_scale, bits):
    """QuantLinear: per-tensor abs-max weight scale, STE clamp; bias at the accumulator scale, int32."""
    w = lin.weight
    w_scale = scalar_clamp_min_ste(torch.abs(torch.max(torch.abs(w))), SCALING_MIN_VAL) / float(int_scale(bits, True))
    w_q = _qdq_weight(w, w_scale, *int_range(bits, True))
    b_q = _qdq_act(lin.bias, w_scale * x_scale, INT32_MIN, INT32_MAX)  # Int32Bias clamps like activations
    return w_q, b_q


def _bits(actor) -> list[tuple[int, bool]]:
    q = actor.cfg.quant
    return [(q.bits_in, True)] + [(q.bits_act, False)] * actor.cfg.depth + [(q.bits_out, True)]


def _quantized_params(actor):
    """Every activation scale and every quantized (weight, bias) of the actor."""
    scales = [_act_scale(layer, b, s) for layer, (b, s) in zip(actor.act_quantizers(), _bits(actor))]
    linears = [_linear_params(lin, scales[i], actor.cfg.quant.bits_weight) for i, lin in enumerate(actor.linears)]
    return scales, linears


# Without gradients (acting, target computation, evaluation) the quantized weights are reused until a
# parameter changes: an optimizer step or a load bumps the tensor's version counter. Kept outside the
# module so that deepcopy and state_dict never carry a stale entry.
_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _cached_params(actor):
    entry = _cache.get(actor)
    if entry is None:  # listing the parameters walks ~300 brevitas submodules: do it once
        entry = _cache[actor] = {"params": list(actor.parameters()), "key": None}
    key = tuple((p.data_ptr(), p._version) for p in entry["params"])
    if entry["key"] != key:
        entry["key"], entry["value"] = key, _quantized_params(actor)
    return entry["value"]


def forward(actor, x: torch.Tensor) -> torch.Tensor:
    scales, linears = _quantized_params(actor) if torch.is_grad_enabled() else _cached_params(actor)
    bits = _bits(actor)
    h = _act(x, scales[0], *bits[0])
    for i, (w_q, b_q) in enumerate(linears):
        h = F.linear(h, w_q, b_q)
        if i < len(linears) - 1:
            h = torch.relu(h)
        h = _act(h, scales[i + 1], *bits[i + 1])
    return h
