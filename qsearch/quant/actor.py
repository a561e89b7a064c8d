"""The policy network: a QAT actor built from brevitas layers, or the FP32 baseline (paper Section 2.2).

Quantize/De-Quantize sits at the input (signed, bits_in), on every weight matrix (signed, bits_weight,
scale = the tensor's absolute maximum, not learned), after every ReLU (unsigned, bits_act) and before
the final tanh (signed, bits_out). The integer scale is q_s = max(|q_min|, |q_max|), which is brevitas'
IntScaling for non-narrow ranges. Activation scales come from brevitas' ParameterFromRuntimeStats: an
exponential moving 99.999th percentile over the first 300 training-mode calls (the warm-up), then a
parameter learned by gradient; the output's starts at a range of at least 0.25 (layers.OutputRange). Biases are quantized to the accumulator's scale (Int32Bias) so the
deployed network adds them as integers.

Convention: the actor is in training mode only inside its own gradient update; every other call
(acting, target computation, evaluation) runs in eval mode, so the warm-up counts update batches.

A recurrent actor (cfg.encoder gru) puts a GRU encoder (quant/gru.py) between the input quantizer and
the MLP: the MLP sees the encoder's hidden state, not the observation. It runs over sequences
(`sequence`, training) or one step at a time with the state carried by the caller (`step`, acting).
"""
from __future__ import annotations

import brevitas.nn as qnn
import torch
from torch import nn

from qsearch.config import PolicyConfig
from qsearch.quant import fastpath
from qsearch.quant.gru import GRUEncoder
from qsearch.quant.layers import OutputRange, learned_act, quant_linear
from qsearch.quant.lut_actor import LUTActor


class QuantActor(nn.Module):
    """obs (normalized) -> pre-tanh action mean. The caller applies tanh and the action-space scaling."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.recurrent = cfg.recurrent
        if self.recurrent:
            self.encoder = GRUEncoder(obs_dim, cfg.encoder_width, cfg.quant)
        dims = [cfg.encoder_width if self.recurrent else obs_dim] + [cfg.width] * cfg.depth
        q = cfg.quant
        if q is None:
            layers = []
            for d_in, d_out in zip(dims[:-1], dims[1:]):
                layers += [nn.Linear(d_in, d_out), nn.ReLU()]
            layers.append(nn.Linear(dims[-1], act_dim))
            self.net = nn.Sequential(*layers)
            return
        self.inp = learned_act(qnn.QuantIdentity, True, q.bits_in)
        self.linears = nn.ModuleList(
            quant_linear(d_in, d_out, q.bits_weight) for d_in, d_out in zip(dims, dims[1:] + [act_dim])
        )
        self.relus = nn.ModuleList(learned_act(qnn.QuantReLU, False, q.bits_act) for _ in range(cfg.depth))
        self.out = learned_act(qnn.QuantIdentity, True, q.bits_out, OutputRange)

    @property
    def quantized(self) -> bool:
        return self.cfg.quant is not None

    def act_quantizers(self) -> list[nn.Module]:
        """The QuantIdentity / QuantReLU layers with learned scales, in forward order (the encoder's
        quantizers have constant scales)."""
        return [self.inp, *self.relus, self.out]

    def freeze_scales(self) -> None:
        """End the warm-up now: copy each moving percentile into the learned scale parameter.

        A saved actor is restored with its `value` parameters (brevitas skips the warm-up on load and
        never saves the moving statistics), so an actor trained for fewer than 300 updates must have
        its statistics copied over before saving or extracting the integer model."""
        if self.quantized:
            for layer in self.act_quantizers():
                fastpath.scaling_impl(layer).init_scale()

    def _fast(self) -> dict | None:
        """How the fast path runs now (fastpath.py): {} after the warm-up, warming=True for an eval-mode
        call without gradients during it, None when brevitas' own forward must run."""
        if fastpath.ready(self):
            return {}
        if not self.training and not torch.is_grad_enabled():  # acting or evaluating during the warm-up
            return {"warming": True}
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) -> (B, act_dim). A recurrent actor takes (B, T, obs_dim) sequences from the zero
        state and returns (B, T, act_dim)."""
        if self.recurrent:
            return self.sequence(x)[0]
        if not self.quantized:
            return self.net(x)
        fast = self._fast()
        if fast is not None:
            return fastpath.forward(self, x, **fast)
        return self.quant_forward(x)[-1].value

    def quant_forward(self, x: torch.Tensor) -> list:
        """brevitas' own forward, returning the QuantTensor after every quantizer: the input, each
        hidden activation and the output. Their .int() values are what the integer engine must match."""
        qt = self.inp(x)
        return [qt, *self.quant_head(qt)]

    def quant_head(self, qt) -> list:
        """brevitas' MLP on a QuantTensor: the QuantTensor after each hidden activation and the output."""
        qts = [qt]
        for lin, relu in zip(self.linears[:-1], self.relus):
            qts.append(relu(lin(qts[-1])))
        qts.append(self.out(self.linears[-1](qts[-1])))
        return qts[1:]

    # ---- recurrent actors ----

    def initial_state(self, batch: int, dtype=torch.float32) -> torch.Tensor:
        """The hidden state at an episode's start: zero."""
        return self.encoder.initial_state(batch, dtype)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the stream: (B, obs_dim) and the state (B, H) -> the means (B, act_dim), the new state."""
        means, states = self.sequence(x[:, None], h)
        return means[:, 0], states[:, 0]

    def sequence(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, obs_dim) from state h (zero if None) -> the means (B, T, act_dim) and the hidden state
        after each step (B, T, H), the MLP's inputs."""
        if h is None:
            h = self.initial_state(x.shape[0], x.dtype)
        if not self.quantized:
            states = self.encoder.float_sequence(x, h)
            return self.net(states), states
        fast = self._fast()
        if fast is not None:
            return fastpath.sequence(self, x, h, **fast)
        means, states = [], []
        for t in range(x.shape[1]):
            parts, qts = self.quant_step(x[:, t], h)
            h = parts["h"]
            means.append(qts[-1].value)
            states.append(h)
        return torch.stack(means, 1), torch.stack(states, 1)

    def quant_step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[dict, list]:
        """brevitas' own step: the encoder's parts (gate pre-activations ax and ah, gates r and z, n and
        the new state h, as float values on their constant grids) and the QuantTensors of the input
        and of the MLP's activations and output, as quant_forward gives them."""
        x_qt = self.inp(x)
        parts = self.encoder.quant_step(x_qt, h)
        return parts, [x_qt, *self.quant_head(self.encoder.state(parts["h"]))]


def build_actor(obs_dim: int, act_dim: int, cfg: PolicyConfig) -> nn.Module:
    """The policy network cfg describes: a QuantActor, or for kind lut a LUTActor (quant/lut_actor.py)."""
    if cfg.lut:
        return LUTActor(obs_dim, act_dim, cfg)
    return QuantActor(obs_dim, act_dim, cfg)
