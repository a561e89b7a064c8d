"""One training run end to end: train -> freeze scales -> integer model -> evaluate -> bundle.

The CLI's `qsearch train` and, later, each search trial call `run`; nothing here knows about either.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qsearch import bundle as bundles
from qsearch import rl
from qsearch.config import TrainConfig
from qsearch.errors import QsearchError
from qsearch.quant import integer, lut_integer
from qsearch.rl.common import EVAL_SEED_OFFSET, torch_device
from qsearch.rl.envs import check_env, observed
from qsearch.policy import Recording
from qsearch.rl.evaluate import evaluate


def check(cfg: TrainConfig, out: Path, force: bool = False, device="cpu") -> None:
    """Everything that can be refused before training starts: fail before hours of work, not after."""
    torch_device(device)
    check_env(cfg.env_id)
    observed(cfg.env_id, cfg.observe)
    bundles.check_destination(Path(out), force)


def run(cfg: TrainConfig, out: Path, episodes: int = 10, progress=None, force: bool = False,
        checkpoints=None, device="cpu") -> bundles.Bundle:
    """checkpoints: where the learner saves its state and which checkpoint it continues from
    (rl/checkpoint.py); None: no checkpoints. device: where the learner trains (rl.train); the bundle,
    its integer model and evaluation are device-free either way."""
    check(cfg, out, force, device)
    result = rl.train(cfg, progress, checkpoints, device)
    actor = result.actor.eval()
    actor.freeze_scales()
    model = engine(cfg).extract(actor, result.obs_norm) if actor.quantized else None
    b = bundles.Bundle(cfg, actor, result.obs_norm, result.action_scale, result.action_bias, model,
                       history=result.history)
    b.evaluation = evaluate_bundle(b, episodes, seed=cfg.seed + EVAL_SEED_OFFSET)
    b.evaluation["train_seconds"] = result.train_seconds
    bundles.write(b, Path(out), force=force)
    return b


def engine(cfg: TrainConfig):
    """The module that extracts and checks the integer model of cfg's policy: a network's or a
    logic circuit's (both offer extract and agreement)."""
    return lut_integer if cfg.policy.lut else integer


def checkpoint_folder(out: Path) -> Path:
    """Where `qsearch train --out OUT` keeps its checkpoints until the bundle is written: OUT.checkpoints."""
    out = Path(out)
    return out.parent / f"{out.name}.checkpoints"


def evaluate_bundle(b: bundles.Bundle, episodes: int, seed: int, noise: float = 0.0) -> dict:
    """Returns with the torch model and, for quantized policies, the integer engine, and how often the
    two produce the same output integers on the observations the torch policy visited."""
    recording = Recording(b.policy("torch"))
    res = evaluate(recording, b.config.env_id, b.obs_norm, episodes, seed, noise, b.config.observe)
    report = {"episodes": episodes, "noise": noise, "seed": seed,
              "torch": {"mean": res.mean, "std": res.std, "returns": res.returns.tolist()}}
    if b.integer is not None:
        res = evaluate(b.policy("int"), b.config.env_id, b.obs_norm, episodes, seed, noise, b.config.observe)
        report["int"] = {"mean": res.mean, "std": res.std, "returns": res.returns.tolist()}
        seen = [np.array(ep) for ep in recording.episodes]
        report["agreement"] = {
            "observations": sum(len(ep) for ep in seen),
            "equal_outputs": engine(b.config).agreement(b.actor, b.integer, seen),
        }
    return report
