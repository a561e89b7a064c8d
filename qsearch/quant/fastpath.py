"""A fused forward for the QAT actor, used after the activation-scale warm-up (and, during it, for
eval-mode calls without gradients).

Why this exists: brevitas' eager forward makes ~270 nested module calls per actor forward. Measured
here (256-wide actor, one thread): a batch-1 forward costs ~10 ms against 0.13 ms in FP32, and an
update step 26 ms against 7 ms, which halves a SAC run's steps/s. torch.compile does not help (11 graph
breaks in brevitas' proxies, ~60 s of compiling, no speed-up), nor on this module's element-wise parts:
inductor's kernel for the activation quantizer's forward took 0.64 ms against 0.25 ms eager on a
256 x 256 batch (backward 0.13 against 0.145 ms), after ~55 s of compiling (torch 2.13, one thread).

So after the warm-up, when every activation scale has become a plain learned parameter, the actor
runs this flat function on brevitas' own parameters: the scales as brevitas derives them (abs-max of
the weights, |learned value| / q_s, with brevitas' scalar_clamp_min_ste), and each quantize/de-quantize
as one autograd node (_QDQ) with brevitas' forward operations and the gradient of brevitas' graph.
Without gradients the quantized weights are cached between optimizer steps. The brevitas
modules stay the source of truth: they hold the parameters, run the warm-up, export to QONNX and give
the integer weights. tests/test_fastpath.py checks that outputs are bitwise equal to brevitas' forward
and gradients equal, so any drift in a brevitas upgrade fails the tests rather than training silently.

During the warm-up, brevitas' eval mode scales by the running statistics (its `buffer`) instead of the
learned value, with the same arithmetic (the statistics are already clamped and positive), so the
eval-mode calls of the warm-up (acting, target actions, evaluation) run here too with warming=True.
Measured (256-wide actor, one thread): brevitas' eval forward 3.2 ms at batch 1 and 4.2 ms at batch 256;
these calls were ~7 of the ~25 ms of a warm-up SAC step. The training-mode calls, which collect the
statistics, stay brevitas'.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from brevitas.function.ops_ste import scalar_clamp_min_ste

from qsearch.quant.gru import PRE_BITS, update
from qsearch.quant.layers import int_range, int_scale

SCALING_MIN_VAL = 1e-10  # brevitas' scaling_min_val for the quantizers the actor uses


def scaling_impl(act_layer):
    return act_layer.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl


def ready(actor) -> bool:
    """True once every activation quantizer has left its statistics warm-up. Asked on every forward;
    once true it stays true (brevitas' counters only grow, and a load sets them past the warm-up), so
    the answer is remembered rather than walking brevitas' proxies each time."""
    if actor in _ready:
        return True
    if all(scaling_impl(q).counter > scaling_impl(q).collect_stats_steps for q in actor.act_quantizers()):
        _ready.add(actor)
        return True
    return False


_ready: "weakref.WeakSet" = weakref.WeakSet()


class _QDQ(torch.autograd.Function):
    """clamp(round(x / s), lo, hi) * s for an activation (brevitas' TensorClamp) in one autograd node:
    brevitas' forward ops, in its order, and the gradient its graph of round_ste, clamp and the two
    scalings gives, written out:

        y = x / s, c = clamp(round(y)), m = 1 where lo <= round(y) <= hi else 0
        dx = g * m,  ds = sum(g * (c - m * y))

    Autograd records ~10 kernels for the same thing; here the backward is two products and a sum,
    and the sum differs from brevitas' graph by float32 rounding only.
    The mask is a float written in place by a comparison (round(y) == c): on these machines a float
    comparison into a bool tensor costs ~45 us and torch.where ~125 us on a 256 x 256 batch, against
    ~11 us for eq_ into round(y)'s own float buffer (measured with the arithmetic mask it replaced,
    five in-place passes: the forward went from ~76 to ~50 us, bit for bit the same). g * m equals
    torch.where(m, g, 0) but for the sign of a zero gradient, which no parameter update can see.
    brevitas' `+ zero_point` (0.0) is left out, which changes only the sign of a zero."""

    @staticmethod
    def forward(ctx, x, scale, lo: int, hi: int):
        c, m, e = _qdq_parts(x, scale, lo, hi)
        ctx.save_for_backward(m, e)
        return c * scale

    @staticmethod
    def backward(ctx, g):
        m, e = ctx.saved_tensors
        return g * m, (g * e).sum(), None, None


def _qdq_parts(x, scale, lo: int, hi: int):
    """(c, m, c - m * y) of _QDQ's docstring, for y = x / scale: six passes over x."""
    y = x / scale
    r = torch.round(y)
    c = torch.clamp(r, lo, hi)
    m = r.eq_(c)  # r is not needed any more
    return c, m, torch.addcmul(c, m, y, value=-1.0)


class _LinearQDQ(torch.autograd.Function):
    """A QuantLinear's weight and bias quantizers in one node. The weight: the per-tensor scale
    s = max(|w|, 1e-10) / q_s (brevitas' abs-max with scalar_clamp_min_ste) and clamp(round(w / s)) * s
    with a straight-through clamp (TensorClampSte). The bias: Int32Bias, an activation quantizer
    (_QDQ) at the accumulator's scale s_b = s * x_scale. The gradient is brevitas' graph written out,
    in the same float operations as separate nodes for the weight, the bias and the product s * x_scale
    would compute (so results are bit for bit those of separate nodes; one node saves two autograd
    nodes' Python overhead per linear and per call):

        db = g_b * m_b,  ds_b = sum(g_b * e_b)                  (_QDQ's backward)
        dx_scale = ds_b * s,  g_s = ds_b * x_scale              (the product's)
        dw = g_w  +  e_argmax * sign(w_argmax) * (ds / q_s),  ds = sum(g_w * (c - y)) + g_s

    torch's max() splits its gradient evenly between tied maxima; a tie of the largest |w| in a float
    weight matrix does not occur in practice, so the whole gradient goes to the one argmax here."""

    @staticmethod
    def forward(ctx, w, b, x_scale, q_s: int, lo: int, hi: int):
        flat = w.reshape(-1)
        top, idx = flat.abs().max(0)
        s = torch.clamp_min(top, SCALING_MIN_VAL) / float(q_s)
        y = w / s
        c = torch.round(y).clamp_(lo, hi)
        b_scale = s * x_scale
        c_b, m_b, e_b = _qdq_parts(b, b_scale, *BIAS_RANGE)
        ctx.q_s = q_s
        ctx.save_for_backward(y, c, idx, torch.sign(flat[idx]), m_b, e_b, s, x_scale)
        return c * s, c_b * b_scale

    @staticmethod
    def backward(ctx, g_w, g_b):
        y, c, idx, sign, m_b, e_b, s, x_scale = ctx.saved_tensors
        ds_b = (g_b * e_b).sum()
        ds = torch.dot(g_w.reshape(-1), (c - y).reshape(-1)) + ds_b * x_scale
        dw = g_w.clone()
        dw.view(-1)[idx] += sign * ds / float(ctx.q_s)
        return dw, g_b * m_b, ds_b * s, None, None, None


BIAS_RANGE = int_range(32, True)  # Int32Bias clamps like a 32-bit signed activation


def _act(x, scale, bits, signed):
    lo, hi = int_range(bits, signed)
    if torch.is_grad_enabled():
        return _QDQ.apply(x, scale, lo, hi)
    return (x / scale).round_().clamp_(lo, hi).mul_(scale)  # the same values, nothing kept for backward


def _act_scale(value, bits, signed):
    """QuantIdentity / QuantReLU after warm-up: the learned scale |value| / q_s."""
    return scalar_clamp_min_ste(torch.abs(value), SCALING_MIN_VAL) / float(int_scale(bits, signed))


def _linear_params(lin, x_scale, bits):
    """QuantLinear: per-tensor abs-max weight scale, STE clamp; bias at the accumulator scale, int32."""
    lo, hi = int_range(bits, True)
    return _LinearQDQ.apply(lin.weight, lin.bias, x_scale, int_scale(bits, True), lo, hi)


def _bits(actor) -> list[tuple[int, bool]]:
    q = actor.cfg.quant
    return [(q.bits_in, True)] + [(q.bits_act, False)] * actor.cfg.depth + [(q.bits_out, True)]


def _scaling_impls(actor) -> list:
    """brevitas' scaling modules of the activation quantizers, found once per actor (reaching them
    walks brevitas' proxies, which costs more than the arithmetic)."""
    impls = _impls.get(actor)
    if impls is None:
        impls = _impls[actor] = [scaling_impl(layer) for layer in actor.act_quantizers()]
    return impls


def _quantized_params(actor, warming: bool = False):
    """Every activation scale and every quantized (weight, bias) of the actor: the MLP's linears and,
    for a recurrent actor, the encoder's two. warming: the scales from the running statistics, as
    brevitas' eval mode takes them during the warm-up."""
    values = [impl.buffer if warming else impl.value for impl in _scaling_impls(actor)]
    scales = [_act_scale(v, b, s) for v, (b, s) in zip(values, _bits(actor))]
    bits = actor.cfg.quant.bits_weight
    encoder, head_in = None, scales[0]
    if actor.recurrent:
        state = _encoder_scales(actor)["state"]
        encoder = (_linear_params(actor.encoder.lin_x, scales[0], bits), _linear_params(actor.encoder.lin_h, state, bits))
        head_in = state  # the MLP sees the hidden state
    in_scales = [head_in, *scales[1:-1]]
    linears = [_linear_params(lin, in_scales[i], bits) for i, lin in enumerate(actor.linears)]
    return scales, linears, encoder


def _encoder_scales(actor) -> dict[str, torch.Tensor]:
    """The encoder's constant scales as float32 tensors (an autograd node's scale must be a tensor)."""
    device = actor.encoder.lin_x.weight.device
    return {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in actor.encoder.scales().items()}


# Without gradients (acting, target computation, evaluation) the quantized weights are reused until a
# parameter changes: an optimizer step or a load bumps the tensor's version counter. Kept outside the
# module so that deepcopy and state_dict never carry a stale entry.
_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_impls: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _cached_params(actor):
    entry = _cache.get(actor)
    if entry is None:  # listing the parameters walks ~300 brevitas submodules: do it once
        entry = _cache[actor] = {"params": list(actor.parameters()), "key": None}
    key = tuple((p.data_ptr(), p._version) for p in entry["params"])
    if entry["key"] != key:
        entry["key"], entry["value"] = key, _quantized_params(actor)
    return entry["value"]


def _params(actor, warming: bool):
    if warming:
        return _quantized_params(actor, warming=True)
    return _quantized_params(actor) if torch.is_grad_enabled() else _cached_params(actor)


def forward(actor, x: torch.Tensor, warming: bool = False) -> torch.Tensor:
    """brevitas' forward once ready(actor); with warming=True, brevitas' eval-mode forward during the
    warm-up (not cached: every training-mode call moves the statistics)."""
    scales, linears, _ = _params(actor, warming)
    bits = _bits(actor)
    return _head(_act(x, scales[0], *bits[0]), scales, linears, bits)


def _head(h, scales, linears, bits):
    """The MLP after its input quantizer."""
    for i, (w_q, b_q) in enumerate(linears):
        h = F.linear(h, w_q, b_q)
        if i < len(linears) - 1:
            h = torch.relu(h)
        h = _act(h, scales[i + 1], *bits[i + 1])
    return h


def sequence(actor, x: torch.Tensor, h: torch.Tensor, warming: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A recurrent actor's QuantActor.sequence on the same terms as forward: (B, T, obs_dim) from the
    state h -> (means (B, T, act_dim), states (B, T, H)). The input's products for all steps are one
    matrix product; the recurrence is one autograd node (_Recurrence)."""
    scales, linears, ((w_x, b_x), (w_h, b_h)) = _params(actor, warming)
    bits, b = _bits(actor), actor.cfg.quant.bits_act
    grid = actor.encoder.scales()
    ax = _act(F.linear(_act(x, scales[0], *bits[0]), w_x, b_x), torch.tensor(grid["pre"], device=x.device), PRE_BITS, True)
    if torch.is_grad_enabled():
        states = _Recurrence.apply(ax, h, w_h, b_h, grid, b)
    else:
        states = _recurrence(ax, h, w_h, b_h, grid, b)[0]
    return _head(states, scales, linears, bits), states


def _recurrence(ax, h, w_h, b_h, grid: dict, bits: int, keep: bool = False):
    """The GRU's steps after the input products ax (B, T, 3H): quant/gru.py's update with the constant
    grids' quantizers, in brevitas' arithmetic. keep: also what _Recurrence's backward needs per step
    (each quantizer's input and range mask)."""
    signed, unsigned = int_range(bits, True), int_range(bits, False)
    seen = {}

    def quantizer(name, scale, lo, hi, before=None):
        def q(v):
            y = v if before is None else before(v)
            r = torch.round(y / scale)
            c = r.clamp(lo, hi)
            if keep:
                seen[name + "_y"], seen[name + "_mask"] = y, (r == c).float()
            return c * scale
        return q

    pre = quantizer("ah", grid["pre"], *int_range(PRE_BITS, True))
    sigmoid = quantizer("sig", grid["gate"], *unsigned, torch.sigmoid)
    tanh = quantizer("tanh", grid["state"], *signed, torch.tanh)
    state = quantizer("hp", grid["state"], *signed)
    states, kept = [], []
    for t in range(ax.shape[1]):
        ah = pre(F.linear(h, w_h, b_h))
        parts = update(ax[:, t], ah, h, sigmoid, tanh, state)
        if keep:
            kept.append({"h": h, "ah": ah, "r": parts["r"], "z": parts["z"], "n": parts["n"], **seen})
        h = parts["h"]
        states.append(h)
    return torch.stack(states, 1), kept


class _Recurrence(torch.autograd.Function):
    """The GRU's recurrence as one autograd node: the forward is _recurrence, the backward
    back-propagation through time written out. As separate autograd nodes (~15 per step, as brevitas'
    modules record them) the Python bookkeeping dominates a window's forward and backward at these
    small widths; bench/recurrent_throughput.py measures both. The gradient is brevitas' (straight-through
    rounding, zero outside a quantizer's range; the constant scales take none); tests/test_gru.py
    checks it against brevitas' graph."""

    @staticmethod
    def forward(ctx, ax, h, w_h, b_h, grid, bits):
        states, kept = _recurrence(ax, h, w_h, b_h, grid, bits, keep=True)
        ctx.kept, ctx.w_h = kept, w_h
        return states

    @staticmethod
    def backward(ctx, g_states):
        w_h, width = ctx.w_h, ctx.w_h.shape[1]
        d_ax = torch.empty(g_states.shape[0], g_states.shape[1], 3 * width, dtype=g_states.dtype, device=g_states.device)
        d_w, d_b = torch.zeros_like(w_h), torch.zeros(3 * width, dtype=g_states.dtype, device=g_states.device)
        d_h = torch.zeros_like(g_states[:, 0])
        for t in reversed(range(g_states.shape[1])):
            k = ctx.kept[t]
            d_hp = (g_states[:, t] + d_h) * k["hp_mask"]  # h' = Q(n + z * (h - n))
            d_n = d_hp * (1 - k["z"])
            d_z = d_hp * (k["h"] - k["n"])
            d_vn = d_n * k["tanh_mask"] * (1 - k["tanh_y"] * k["tanh_y"])  # n = Q(tanh(ax_n + r * ah_n))
            d_r = d_vn * k["ah"][:, 2 * width:]
            d_vrz = torch.cat([d_r, d_z], 1) * k["sig_mask"] * k["sig_y"] * (1 - k["sig_y"])  # r, z = Q(sigmoid(ax + ah))
            d_ax[:, t] = torch.cat([d_vrz, d_vn], 1)
            d_ah = torch.cat([d_vrz, d_vn * k["r"]], 1) * k["ah_mask"]  # ah = Q(W_h h + b_h)
            d_w += d_ah.T @ k["h"]
            d_b += d_ah.sum(0)
            d_h = d_hp * k["z"] + d_ah @ w_h
        return d_ax, d_h, d_w, d_b, None, None
