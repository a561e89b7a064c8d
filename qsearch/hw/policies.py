"""The policies a hardware sweep costs: from bundles, or built with random weights from a shape.

Hardware cost depends on the shape and bit widths only, so a policy that was never trained serves
(the paper's Table-1 configurations and its reference design, for comparison).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qsearch.config import PolicyConfig, QuantBits
from qsearch.errors import QsearchError
from qsearch.quant.actor import QuantActor, build_actor
from qsearch.quant.lut_actor import LUTActor


@dataclass(frozen=True)
class HwPolicy:
    name: str
    actor: QuantActor | LUTActor
    bundle: Path | None = None  # where it came from, when it did


# The paper's Table 1 (SAC, output 8 bit) with the MuJoCo v4 observation/action sizes it used.
PAPER_TABLE1 = {
    "Humanoid": (376, 17, 16, 3, 4),  # obs, act, width, core bits, input bits
    "Walker2d": (17, 6, 128, 2, 3),
    "Ant": (27, 8, 64, 2, 3),
    "HalfCheetah": (17, 6, 256, 3, 8),
    "Hopper": (11, 3, 16, 2, 6),
}
REFERENCE = (256, QuantBits(bits_in=8, bits_weight=4, bits_act=4, bits_out=8))  # paper's reference design


def random_actor(cfg: PolicyConfig, obs_dim: int, act_dim: int, seed: int = 0) -> QuantActor | LUTActor:
    """A quantized actor with random weights (a LUT actor: random wiring, truth tables and head) and
    activation scales set from random inputs."""
    if cfg.quant is None:
        raise QsearchError("an FP32 policy has no integer hardware; give bit widths")
    torch.manual_seed(seed)
    actor = build_actor(obs_dim, act_dim, cfg).train()
    with torch.no_grad():  # a few statistics-collecting calls, then the scales are frozen
        if isinstance(actor, LUTActor):  # its head starts the same for every action
            actor.log_gain.uniform_(-0.5, 0.5)
            actor.bias.uniform_(-0.5, 0.5)
        for _ in range(3):
            actor(torch.randn(256, 8, obs_dim) if cfg.recurrent else torch.randn(256, obs_dim))  # recurrent: sequences
    actor.freeze_scales()
    return actor.eval()


def paper_policies(reference: bool = False) -> list[HwPolicy]:
    """The five Table-1 configurations; with `reference`, also the reference design for each task."""
    out = []
    for env, (obs, act, width, core, bits_in) in PAPER_TABLE1.items():
        cfg = PolicyConfig(width=width, depth=2, quant=QuantBits(bits_in, core, core, 8))
        out.append(HwPolicy(f"{env} h{width} in{bits_in} core{core}", random_actor(cfg, obs, act)))
        if reference:
            out.append(HwPolicy(f"{env} reference", reference_actor(obs, act)))
    return out


def reference_actor(obs_dim: int, act_dim: int) -> QuantActor:
    width, bits = REFERENCE
    return random_actor(PolicyConfig(width=width, depth=2, quant=bits), obs_dim, act_dim)


def padded(actor: QuantActor, multiple: int) -> QuantActor:
    """The same policy with observation and action dimensions zero-padded to a multiple (paper: 32).

    Zero weight columns read the extra inputs without effect, and zero rows (and biases) give extra
    outputs nobody reads. Per-tensor weight scales are abs-max, so zeros leave every scale, and thus
    every integer of the original dimensions, unchanged. Hidden widths are not padded."""
    if multiple is None or multiple <= 1:
        return actor
    if isinstance(actor, LUTActor):
        raise QsearchError("--pad pads an MLP policy's layers (as the paper's FINN designs); a logic-circuit "
                           "(LUT) policy is not padded")
    def up(n: int) -> int:
        return -(-n // multiple) * multiple
    obs, act = up(actor.obs_dim), up(actor.act_dim)
    if (obs, act) == (actor.obs_dim, actor.act_dim):
        return actor
    state = {k: v.clone() for k, v in actor.state_dict().items()}
    last = len(actor.linears) - 1
    w0 = state["linears.0.weight"]
    state["linears.0.weight"] = torch.cat([w0, w0.new_zeros(w0.shape[0], obs - w0.shape[1])], 1)
    wl, bl = state[f"linears.{last}.weight"], state[f"linears.{last}.bias"]
    state[f"linears.{last}.weight"] = torch.cat([wl, wl.new_zeros(act - wl.shape[0], wl.shape[1])], 0)
    state[f"linears.{last}.bias"] = torch.cat([bl, bl.new_zeros(act - bl.shape[0])])
    out = QuantActor(obs, act, actor.cfg)
    out.load_state_dict(state)
    return out.eval()


def observations(obs_dim: int, n: int, seed: int = 0) -> np.ndarray:
    """Normalized observations for checks: N(0, 2), wide enough to reach the input clip range."""
    return np.random.default_rng(seed).normal(0.0, 2.0, (n, obs_dim)).astype(np.float32)
