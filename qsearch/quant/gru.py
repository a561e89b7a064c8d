"""The recurrent encoder of a recurrent policy: a GRU over the stream of normalized observations whose
hidden state feeds the actor's MLP (Böhm et al. 2025's quantization-compatible GRU, issue 26).

PyTorch's GRU (the same gates and update, in the form that needs one product fewer per element):
  r = sigmoid(W_xr x + b_xr + W_hr h + b_hr)          z likewise with the z rows
  n = tanh(W_xn x + b_xn + r * (W_hn h + b_hn))
  h' = n + z * (h - n)                                  = (1 - z) n + z h

Quantized (brevitas has no QuantGRU), every part is an integer the engine computes exactly:
  x        the actor's input quantizer's output (bits_in, learned scale)
  ax, ah   the two matrix products (QuantLinear, bits_weight, Int32Bias), each requantized by one
           shared quantizer to the gate pre-activation grid: signed PRE_BITS, constant range
           +-GATE_RANGE (sigmoid and tanh are flat beyond it). Sharing one scale makes ax + ah an
           integer sum.
  r, z     QuantSigmoid: unsigned bits_act, constant scale 2^-bits_act (so 0 <= z < 1)
  n, h     QuantTanh and the state quantizer: signed bits_act, constant scale 2^-(bits_act-1)
           (the range [-1, 1) of tanh)
Every scale after the input is a constant power of two, so r * ah_n, n + z * (h - n) and their
sums are exact in float32 and float64, and the integer engine needs no rounding but the
quantizers' own (quant/integer.py). The only learned scales are the input's and the MLP's.

The FP32 encoder (quant None) is PyTorch's nn.GRU: the same equations without quantizers, its gate
rows in the same order (r, z, n), so `qsearch ptq` copies its weights into the two products. The
hidden state starts at zero at every episode's start.
"""
from __future__ import annotations

import math

import brevitas.nn as qnn
import torch
from torch import nn

from qsearch.config import QuantBits
from qsearch.quant.layers import const_act, int_scale, quant_linear

GATE_RANGE = 4.0  # the gate pre-activations' range: sigmoid(4) = 0.982, tanh(4) = 0.9993
# The pre-activations' grid is 8 bits at every core width. They are sums the gate thresholds compare,
# never stored or multiplied, so their precision costs search steps in the two products' requantization
# (8 instead of bits_act), not gate levels. On the core's grid they fail at low widths: at 2 bits the
# grid is {-4, -2, 0, 2}, an initialized GRU's pre-activations (|W x + b| < 1) all round to 0, and the
# state stays 0 for ever (measured: every QAT core-2 GRU run of the first evidence study).
PRE_BITS = 8


class GRUEncoder(nn.Module):
    """x (normalized obs; with quant, the input quantizer's output) -> hidden state, one step at a time."""

    def __init__(self, in_dim: int, width: int, quant: QuantBits | None):
        super().__init__()
        self.in_dim, self.width, self.quant = in_dim, width, quant
        if quant is None:
            self.gru = nn.GRU(in_dim, width, batch_first=True)  # initialized as below
        else:
            b = quant.bits_act
            self.lin_x = quant_linear(in_dim, 3 * width, quant.bits_weight)
            self.lin_h = quant_linear(width, 3 * width, quant.bits_weight)
            self.pre = const_act(qnn.QuantIdentity, True, PRE_BITS, GATE_RANGE)
            self.sigmoid = const_act(qnn.QuantSigmoid, False, b, (2**b - 1) / 2**b)  # scale 2^-b
            self.tanh = const_act(qnn.QuantTanh, True, b, 1.0)  # scale 2^-(b-1)
            self.state = const_act(qnn.QuantIdentity, True, b, 1.0)
        bound = 1.0 / math.sqrt(width)  # PyTorch's GRU initialization
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def scales(self) -> dict[str, float]:
        """The constant scales: gate pre-activations, gates r and z, and n and the hidden state."""
        b = self.quant.bits_act
        return {"pre": GATE_RANGE / int_scale(PRE_BITS, True), "gate": 2.0**-b, "state": 2.0 ** -(b - 1)}

    def initial_state(self, batch: int, dtype=torch.float32) -> torch.Tensor:
        """Zero, on the device the encoder's weights are on."""
        return torch.zeros(batch, self.width, dtype=dtype, device=next(self.parameters()).device)

    def quant_step(self, x_qt, h: torch.Tensor) -> dict:
        """brevitas' own step: x_qt the input quantizer's QuantTensor, h the (dequantized) state.
        Returns every quantized part (float values) by name, 'h' the new state; the reference the
        integer engine is checked against and the warm-up path of training."""
        h_qt = self.state(h)  # exact: h is on the state grid already; makes it a QuantTensor for Int32Bias
        ax, ah = self.pre(self.lin_x(x_qt)).value, self.pre(self.lin_h(h_qt)).value
        parts = update(ax, ah, h_qt.value, lambda v: self.sigmoid(v).value, lambda v: self.tanh(v).value,
                       lambda v: self.state(v).value)
        return {"ax": ax, "ah": ah, **parts}

    def float_sequence(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The FP32 encoder over (B, T, in_dim) from the state h (B, H) -> the states (B, T, H)."""
        return self.gru(x, h[None])[0]

    def float_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The FP32 encoder's (weight, bias) of the input product `x` and the state product `h`."""
        g = self.gru
        return {"x": (g.weight_ih_l0, g.bias_ih_l0), "h": (g.weight_hh_l0, g.bias_hh_l0)}


def update(ax, ah, h, sigmoid, tanh, state) -> dict:
    """The GRU's gates and state update from the two products ax = W_x x + b_x and ah = W_h h + b_h
    (rows r, z, n), with the nonlinearities and quantizers given. Written once for brevitas' path and
    the fast path, so that they compute the same thing in the same order."""
    width = h.shape[-1]
    rz = sigmoid(ax[..., : 2 * width] + ah[..., : 2 * width])
    r, z = rz[..., :width], rz[..., width:]
    n = tanh(ax[..., 2 * width:] + r * ah[..., 2 * width:])
    return {"r": r, "z": z, "n": n, "h": state(n + z * (h - n))}

