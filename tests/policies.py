"""Policies for tests: warmed-up QAT actors, recurrent (GRU) ones, bundles written from them, and hard
observations."""
import copy
import functools

import numpy as np
import torch

from qsearch import bundle as bundles
from qsearch.config import PolicyConfig, QuantBits, TrainConfig
from qsearch.obs_norm import ObsNorm
from qsearch.quant import integer
from qsearch.quant.actor import QuantActor


def warmed_actor(bits: QuantBits, obs_dim=11, act_dim=3, width=32, depth=2, updates=305, seed=0) -> QuantActor:
    """A QAT actor trained on a toy regression past its 300-call activation-scale warm-up.

    Cached: the warm-up runs brevitas' eager forward (~10 ms a call), so each test gets a copy."""
    return copy.deepcopy(_warmed_actor(bits, obs_dim, act_dim, width, depth, updates, seed))


@functools.lru_cache(maxsize=None)
def _warmed_actor(bits, obs_dim, act_dim, width, depth, updates, seed) -> QuantActor:
    torch.manual_seed(seed)
    actor = QuantActor(obs_dim, act_dim, PolicyConfig(width=width, depth=depth, quant=bits))
    opt = torch.optim.Adam(actor.parameters(), 1e-3)
    target = torch.randn(obs_dim, act_dim)
    actor.train()
    for _ in range(updates):
        x = torch.randn(128, obs_dim) * 2
        loss = (actor(x) - torch.tanh(x @ target)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return actor.eval()


def gru_actor(bits: int, warm: bool = False, obs_dim: int = 3) -> QuantActor:
    """A QAT actor with a GRU encoder (8 units, then 16-16-2; 6-bit input, 5-bit output, `bits` for
    the weights, activations, gates and state). warm: past the activation-scale warm-up (300
    training-mode calls, the input's once per step); otherwise a few calls set the statistics and
    freeze_scales ends the warm-up."""
    torch.manual_seed(bits)
    cfg = PolicyConfig(width=16, encoder="gru", encoder_width=8,
                       quant=QuantBits(bits_in=6, bits_weight=bits, bits_act=bits, bits_out=5))
    actor = QuantActor(obs_dim, 2, cfg).train()
    for _ in range(31 if warm else 2):
        actor.sequence(torch.randn(4, 10, obs_dim) * 2)
    if not warm:
        actor.freeze_scales()
    return actor.eval()


def make_bundle(rng, quantized=True):
    """A Hopper-shaped bundle in memory: the paper's Hopper bits (6-bit input, 2-bit core), or FP32."""
    if quantized:
        actor = warmed_actor(QuantBits(6, 2, 2, 8))
    else:
        actor = QuantActor(11, 3, PolicyConfig(width=32, quant=None)).eval()
    cfg = TrainConfig(env_id="Hopper-v5", policy=actor.cfg, total_steps=1000)
    norm = ObsNorm(rng.normal(size=11).astype(np.float32), rng.uniform(0.5, 2, 11).astype(np.float32))
    model = integer.extract(actor, norm) if quantized else None
    return bundles.Bundle(cfg, actor, norm, np.ones(3, np.float32), np.zeros(3, np.float32), model,
                          {"torch": {"mean": 1.0}}, [{"step": 1000, "eval_return_mean": 1.0}])


def write_bundle(path, actor, env_id="Hopper-v5"):
    """A bundle folder for `actor` with a random normalization."""
    rng = np.random.default_rng(1)
    norm = ObsNorm(rng.normal(size=actor.obs_dim).astype(np.float32),
                   rng.uniform(0.5, 2, actor.obs_dim).astype(np.float32))
    model = integer.extract(actor, norm) if actor.quantized else None
    cfg = TrainConfig(env_id=env_id, policy=actor.cfg)
    b = bundles.Bundle(cfg, actor, norm, np.full(actor.act_dim, 0.4, np.float32),
                       np.zeros(actor.act_dim, np.float32), model)
    return bundles.write(b, path)


CONFIGS = [QuantBits(6, 2, 2, 8), QuantBits(8, 8, 8, 8), QuantBits(2, 2, 2, 2), QuantBits(4, 3, 3, 5)]


def hard_observations(model, rng, n=10_000):
    """Typical values, values on and next to the input quantizer's rounding ties, and values far out."""
    dim, s = model.obs_dim, model.input_scale
    typical = rng.normal(0, 1.5, (n // 2, dim)).astype(np.float32)
    k = rng.integers(-200, 200, (n // 4, dim)).astype(np.float32)
    ties = ((k + np.float32(0.5)) * s).astype(np.float32)
    near = np.nextafter(ties, np.where(rng.random(ties.shape) < 0.5, np.inf, -np.inf).astype(np.float32))
    far = (rng.standard_cauchy((n // 8, dim)) * 1e3).astype(np.float32)
    return np.concatenate([typical, ties[: n // 8], near[: n // 8], far, -far])[:n]
