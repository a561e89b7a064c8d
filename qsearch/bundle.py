"""The policy bundle: the one hand-off format between qsearch's stages.

A folder holding:
  bundle.json     format marker, the training configuration, the environment's shapes and action scaling,
                  and the machine that wrote it (CPU, torch's kernel level, library versions: qsearch/machine.py)
  actor.pt        the actor's state_dict (load with torch.load(..., weights_only=True))
  norm.npz        the frozen observation normalization (obs_mean, obs_std, float32)
  integer.npz     the integer model (quantized policies only; see qsearch/quant/integer.py, and for
                  a logic-circuit policy qsearch/quant/lut_integer.py)
  integer.json    its description
  eval.json       evaluation results (torch engine, integer engine, their agreement)
  history.json    evaluation returns over training steps

A bundle is written to a temporary folder beside its destination and renamed into place, so a
failed or interrupted run never leaves half a bundle behind.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from qsearch import __version__, machine
from qsearch.config import TrainConfig
from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant.actor import QuantActor, build_actor
from qsearch.quant.integer import IntegerModel
from qsearch.quant.lut_actor import LUTActor
from qsearch.quant.lut_integer import IntLUTModel
from qsearch.rl.evaluate import torch_policy

FORMAT = "qsearch-bundle"
VERSION = 1
MARKER = "bundle.json"


@dataclass
class Bundle:
    config: TrainConfig
    actor: QuantActor | LUTActor
    obs_norm: ObsNorm
    action_scale: np.ndarray
    action_bias: np.ndarray
    integer: IntegerModel | IntLUTModel | None = None
    evaluation: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    path: Path | None = None

    def require_stateless(self, what: str) -> None:
        """Refuse a recurrent policy where `what` cannot carry its state."""
        if self.config.policy.recurrent:
            raise QsearchError(f"{self.path} holds a recurrent policy (a GRU encoder): {what} has no recurrent "
                               "layers; export it with --format c, json or mlflow")

    def require_network(self, what: str) -> None:
        """Refuse a logic-circuit policy where `what` takes only networks of multiply-accumulates."""
        if self.config.policy.lut:
            raise QsearchError(f"{self.path} holds a logic-circuit (LUT) policy: {what} takes networks only; "
                               "export it with --format c, json, verilog or mlflow")

    def policy(self, engine: str):
        """A callable from normalized observations to actions in [-1, 1], run by `engine`."""
        if engine == "int":
            if self.integer is None:
                raise QsearchError("this bundle holds an FP32 policy: it has no integer model (use --engine torch)")
            return self.integer.policy()
        if engine == "torch":
            return torch_policy(self.actor)
        raise QsearchError(f"unknown engine {engine!r}; choose torch or int")


def write(bundle: Bundle, out: Path, force: bool = False) -> Path:
    """Write `bundle` to the folder `out` atomically. An existing `out` is replaced only with force."""
    out = Path(out)
    if bundle.config.policy != bundle.actor.cfg:  # the actor is rebuilt from the config when read
        raise ValueError("the bundle's configuration does not describe its actor")
    check_destination(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        meta = {
            "format": FORMAT, "version": VERSION, "qsearch": __version__,
            "config": bundle.config.to_dict(),
            "obs_dim": bundle.actor.obs_dim, "act_dim": bundle.actor.act_dim,
            "action_scale": [float(v) for v in bundle.action_scale],
            "action_bias": [float(v) for v in bundle.action_bias],
            "quantized": bundle.actor.quantized,
            "machine": machine.describe(),
        }
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
        torch.save(bundle.actor.state_dict(), tmp / "actor.pt")
        np.savez(tmp / "norm.npz", obs_mean=bundle.obs_norm.mean, obs_std=bundle.obs_norm.std)
        if bundle.integer is not None:
            bundle.integer.save(tmp)
        (tmp / "eval.json").write_text(json.dumps(bundle.evaluation, indent=2) + "\n")
        (tmp / "history.json").write_text(json.dumps(bundle.history, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bundle.path = out
    return out


def check_destination(out: Path, force: bool) -> None:
    """Refuse to overwrite anything that is not a bundle, and a bundle unless forced."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise QsearchError(f"{out} exists and is not a folder")
    if (out / MARKER).exists():
        if not force:
            raise QsearchError(f"{out} already holds a bundle; pass --force to replace it")
    elif any(out.iterdir()):
        raise QsearchError(f"{out} exists and is not an empty folder or a qsearch bundle")


def read(path: Path) -> Bundle:
    """Load a bundle; a missing, foreign or damaged folder is a QsearchError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise QsearchError(f"{path} is not a folder (expected a qsearch bundle)")
    marker = path / MARKER
    if not marker.is_file():
        raise QsearchError(f"{path} is not a qsearch bundle: {MARKER} is missing")
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError) as e:
        raise QsearchError(f"{marker} is unreadable: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise QsearchError(f"{path} is not a qsearch bundle: {MARKER} has no '{FORMAT}' format marker")
    if meta.get("version") != VERSION:
        raise QsearchError(f"{path} is a version {meta.get('version')} bundle; this qsearch reads version {VERSION}")
    try:
        config = TrainConfig.from_dict(meta["config"])
        actor = build_actor(meta["obs_dim"], meta["act_dim"], config.policy)
        actor.load_state_dict(torch.load(path / "actor.pt", weights_only=True))
        with np.load(path / "norm.npz", allow_pickle=False) as z:
            obs_norm = ObsNorm(z["obs_mean"], z["obs_std"])
        model = IntLUTModel if config.policy.lut else IntegerModel
        integer = model.load(path) if meta["quantized"] else None
        evaluation = json.loads((path / "eval.json").read_text())
        history = json.loads((path / "history.json").read_text())
    except QsearchError:
        raise
    except Exception as e:  # a damaged bundle: name the problem, never a traceback
        raise QsearchError(f"{path} is a damaged qsearch bundle: {type(e).__name__}: {e}") from None
    return Bundle(config, actor.eval(), obs_norm, np.array(meta["action_scale"], np.float32),
                  np.array(meta["action_bias"], np.float32), integer, evaluation, history, path)
