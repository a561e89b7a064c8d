"""Post-training quantization: the baseline of the ESP32 paper (Bohm et al. 2025) and QuaRL.

A trained FP32 bundle's weights go into a QuantActor of the requested bit widths; weight scales follow
from the weights (abs-max, as in QAT), and activation scales are calibrated with brevitas'
`calibration_mode` on normalized observations of rollouts of the FP32 policy (CalibrationConfig). The
result is a bundle of the same kind as a QAT run's, integer model included, so reports put PTQ and
QAT side by side at each bit width.

How the calibration data and statistic were chosen (measured with bench/ptq_calibration.py, in
deploy/README.md's "Why INT8 PTQ fell over"): a balanced pendulum's deterministic rollouts are
almost all quiet states with tiny actions, and brevitas' statistic, the 99.999th percentile of one
batch, averaged over 256-row batches, follows the quiet batches: on a TD3 InvertedPendulum policy
the output quantizer's range came out at +-0.043 (pre-tanh) while the policy's actions reach 0.23
in its own episodes and 1.25 after perturbations, so the INT8 policy could push with at most 4% of
its force and fell. So the rollouts explore (Gaussian noise on the actions, as TD3 and DDPG train),
and each quantizer's range is the largest value seen over the whole set (`max`), or brevitas'
percentile over the whole set as one batch (`percentile`). Bohm et al. do not say how they
calibrated.

A recurrent policy (Böhm et al.'s GRU encoder) is calibrated the same way: its encoder's gate and
state quantizers have constant ranges (quant/gru.py), and the MLP's are calibrated on the hidden
states the FP32 encoder computes over each calibration episode from its reset.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import torch
from brevitas.graph.calibrate import calibration_mode
from torch import nn

from qsearch import bundle as bundles
from qsearch.config import FIXED_BITS, CalibrationConfig, QuantBits
from qsearch.errors import QsearchError
from qsearch.pipeline import evaluate_bundle
from qsearch.policy import Recording
from qsearch.quant import fastpath, integer
from qsearch.quant.actor import QuantActor
from qsearch.rl.common import EVAL_SEED_OFFSET
from qsearch.rl.evaluate import evaluate

def ptq(src: str | Path, out: Path, bits_core: int, bits_in: int, calib: CalibrationConfig = CalibrationConfig(),
        episodes: int = 10, force: bool = False, tracking_uri: str | None = None) -> bundles.Bundle:
    """Quantize the FP32 bundle `src` (a folder or an MLflow run id; core = weights and hidden
    activations, output at 8 bits as in the paper's scopes), evaluate it like a trained bundle and
    write it to `out`."""
    from qsearch.locate import locate_bundle

    bits = QuantBits(bits_in=bits_in, bits_weight=bits_core, bits_act=bits_core, bits_out=FIXED_BITS)
    if episodes < 1:
        raise QsearchError("--episodes must be at least 1")
    bundles.check_destination(Path(out), force)
    src_bundle = bundles.read(locate_bundle(src, tracking_uri))
    src_bundle.require_network("PTQ")
    if src_bundle.actor.quantized:
        raise QsearchError(f"{src} is already quantized; PTQ starts from an FP32 bundle")
    cfg = src_bundle.config
    observations = calibration_episodes(src_bundle, calib.episodes, calib.action_noise)
    actor = quantize(src_bundle.actor, bits, observations, calib.statistic)
    b = bundles.Bundle(
        dataclasses.replace(cfg, policy=actor.cfg), actor, src_bundle.obs_norm,
        src_bundle.action_scale, src_bundle.action_bias, integer.extract(actor, src_bundle.obs_norm),
        history=src_bundle.history,  # the FP32 training that produced these weights
    )
    b.evaluation = evaluate_bundle(b, episodes, seed=cfg.seed + EVAL_SEED_OFFSET)
    b.evaluation["ptq"] = {"source": str(src_bundle.path), "calib_episodes": calib.episodes,
                           "calib_action_noise": calib.action_noise, "calib_statistic": calib.statistic,
                           "calib_observations": sum(map(len, observations)), "calib_seed": cfg.seed,
                           "source_evaluation": src_bundle.evaluation.get("torch")}
    bundles.write(b, Path(out), force=force)
    return b


def calibration_episodes(b: bundles.Bundle, episodes: int, action_noise: float = 0.0,
                         seed: int | None = None) -> list[np.ndarray]:
    """Normalized observations (T, obs_dim) of each of `episodes` rollouts of the FP32 policy, its
    actions perturbed by Gaussian noise of std `action_noise` (clipped to [-1, 1]), seeded by default
    with the training seed (apart from the evaluation seeds, so the policy is not calibrated on its
    test episodes)."""
    seed = b.config.seed if seed is None else seed
    rng = np.random.default_rng(seed)

    def explore(a):
        return np.clip(a + rng.normal(0.0, action_noise, a.shape), -1.0, 1.0).astype(np.float32) if action_noise else a

    recording = Recording(b.policy("torch"), explore)
    evaluate(recording, b.config.env_id, b.obs_norm, episodes, seed, observe=b.config.observe)
    return [np.array(ep, np.float32) for ep in recording.episodes]


def calibration_observations(b: bundles.Bundle, episodes: int, action_noise: float = 0.0,
                             seed: int | None = None) -> np.ndarray:
    """calibration_episodes' observations as one set (n, obs_dim)."""
    return np.concatenate(calibration_episodes(b, episodes, action_noise, seed))


def quantize(fp32: QuantActor, bits: QuantBits, observations, statistic: str = "max") -> QuantActor:
    """A QuantActor holding `fp32`'s weights, its activation ranges calibrated on `observations` (a set
    (n, obs_dim), or a list of episodes, which a recurrent policy needs): brevitas' percentile over them
    as one batch (one batch: an average of per-batch percentiles follows the typical batch, not the rare
    large values), then, for `max`, each range widened to the largest |value| seen."""
    actor = with_weights(fp32, bits)
    episodes = observations if isinstance(observations, list) else [observations]
    x = torch.from_numpy(np.concatenate(episodes))
    largest = {}
    hooks = [layer.register_forward_pre_hook(lambda m, args: largest.__setitem__(m, _largest(m, args[0])))
             for layer in actor.act_quantizers()] if statistic == "max" else []
    with torch.no_grad():
        with calibration_mode(actor):  # float forward, activation statistics collected, then frozen
            if actor.recurrent:  # the MLP sees the FP32 encoder's states, each episode from its reset
                states = torch.cat([fp32.sequence(torch.from_numpy(ep)[None])[1][0] for ep in episodes])
                actor.inp(x)
                actor.quant_head(states)
            else:
                actor.quant_forward(x)  # forward() expects QuantTensors, absent here
        for h in hooks:
            h.remove()
        for layer, value in largest.items():
            fastpath.scaling_impl(layer).value.fill_(max(value, fastpath.SCALING_MIN_VAL))
    return actor.eval()


def with_weights(fp32: QuantActor, bits: QuantBits) -> QuantActor:
    """A QuantActor of `bits` holding `fp32`'s weights, its activation ranges not yet calibrated."""
    actor = QuantActor(fp32.obs_dim, fp32.act_dim, dataclasses.replace(fp32.cfg, quant=bits)).eval()
    pairs = list(zip(actor.linears, [m for m in fp32.net if isinstance(m, nn.Linear)], strict=True))
    pairs = [(q.weight, q.bias, fp.weight, fp.bias) for q, fp in pairs]
    if actor.recurrent:
        fp = fp32.encoder.float_weights()
        pairs += [(actor.encoder.lin_x.weight, actor.encoder.lin_x.bias, *fp["x"]),
                  (actor.encoder.lin_h.weight, actor.encoder.lin_h.bias, *fp["h"])]
    with torch.no_grad():
        for q_weight, q_bias, weight, bias in pairs:
            q_weight.copy_(weight)
            q_bias.copy_(bias)
    return actor


def _largest(layer, x) -> float:
    """The largest |value| a quantizer receives; for a ReLU's, the largest value after the ReLU."""
    x = x.value if hasattr(x, "value") else x
    return float(x.clamp(min=0).max() if isinstance(layer, qnn.QuantReLU) else x.abs().max())
