"""Post-training quantization: the baseline of the ESP32 paper (Bohm et al. 2025) and QuaRL.

A trained FP32 bundle's weights go into a QuantActor of the requested bit widths; weight scales follow
from the weights (abs-max, as in QAT), and activation scales are calibrated with brevitas'
`calibration_mode` on normalized observations the FP32 policy visits in its own rollouts (the same
99.999th-percentile statistic QAT warms up with, averaged over calibration batches). The result is a
bundle of the same kind as a QAT run's, integer model included, so reports put PTQ and QAT side by
side at each bit width.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from brevitas.graph.calibrate import calibration_mode
from torch import nn

from qsearch import bundle as bundles
from qsearch.config import FIXED_BITS, QuantBits
from qsearch.errors import QsearchError
from qsearch.pipeline import evaluate_bundle
from qsearch.quant import integer
from qsearch.quant.actor import QuantActor
from qsearch.rl.common import EVAL_SEED_OFFSET
from qsearch.rl.evaluate import evaluate

CALIB_BATCH = 256


def ptq(src: str | Path, out: Path, bits_core: int, bits_in: int, calib_episodes: int, episodes: int = 10,
        force: bool = False, tracking_uri: str | None = None) -> bundles.Bundle:
    """Quantize the FP32 bundle `src` (a folder or an MLflow run id; core = weights and hidden
    activations, output at 8 bits as in the paper's scopes), evaluate it like a trained bundle and
    write it to `out`."""
    from qsearch.locate import locate_bundle

    bits = QuantBits(bits_in=bits_in, bits_weight=bits_core, bits_act=bits_core, bits_out=FIXED_BITS)
    if calib_episodes < 1 or episodes < 1:
        raise QsearchError("--calib-episodes and --episodes must be at least 1")
    bundles.check_destination(Path(out), force)
    src_bundle = bundles.read(locate_bundle(src, tracking_uri))
    if src_bundle.actor.quantized:
        raise QsearchError(f"{src} is already quantized; PTQ starts from an FP32 bundle")
    cfg = src_bundle.config
    observations = calibration_observations(src_bundle, calib_episodes)
    actor = quantize(src_bundle.actor, bits, observations)
    b = bundles.Bundle(
        dataclasses.replace(cfg, policy=actor.cfg), actor, src_bundle.obs_norm,
        src_bundle.action_scale, src_bundle.action_bias, integer.extract(actor, src_bundle.obs_norm),
        history=src_bundle.history,  # the FP32 training that produced these weights
    )
    b.evaluation = evaluate_bundle(b, episodes, seed=cfg.seed + EVAL_SEED_OFFSET)
    b.evaluation["ptq"] = {"source": str(src_bundle.path), "calib_episodes": calib_episodes,
                           "calib_observations": int(len(observations)), "calib_seed": cfg.seed,
                           "source_evaluation": src_bundle.evaluation.get("torch")}
    bundles.write(b, Path(out), force=force)
    return b


def calibration_observations(b: bundles.Bundle, episodes: int) -> np.ndarray:
    """Normalized observations from deterministic rollouts of the FP32 policy, seeded with the training
    seed (apart from the evaluation seeds, so the policy is not calibrated on its test episodes)."""
    seen = []
    act = b.policy("torch")

    def recording(x):
        seen.append(x)
        return act(x)

    evaluate(recording, b.config.env_id, b.obs_norm, episodes, b.config.seed)
    return np.concatenate(seen).astype(np.float32)


def quantize(fp32: QuantActor, bits: QuantBits, observations: np.ndarray) -> QuantActor:
    """A QuantActor holding `fp32`'s weights, its activation scales calibrated on `observations`."""
    cfg = dataclasses.replace(fp32.cfg, quant=bits)
    actor = QuantActor(fp32.obs_dim, fp32.act_dim, cfg).eval()
    fp_linears = [m for m in fp32.net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for q_lin, fp_lin in zip(actor.linears, fp_linears, strict=True):
            q_lin.weight.copy_(fp_lin.weight)
            q_lin.bias.copy_(fp_lin.bias)
        # equal batches: brevitas averages one percentile per batch, each with the same weight
        batches = torch.from_numpy(observations).tensor_split(max(1, round(len(observations) / CALIB_BATCH)))
        with calibration_mode(actor):  # float forward, activation statistics collected, then frozen
            for batch in batches:
                actor.quant_forward(batch)  # forward() expects QuantTensors, absent here
    return actor.eval()
