"""A learner's whole state at an environment step, so that a run killed at any point continues
exactly: the same actor.pt, norm.npz and integer.npz bytes and the same history (timing aside) as a
run that never stopped.

What exact continuation needs, each found by a test that failed without it:
- every module's parameters AND buffers, copied raw (named_parameters / named_buffers), not through
  state_dict: brevitas' activation-scale quantizers save their running statistics in place of the
  learned scale during the warm-up and, when loaded, end the warm-up early; their `counter`s are
  saved beside them and restored too;
- the optimizers' states (Adam's moments and step counts), the entropy temperature's log;
- the running observation normalization, the replay buffer's contents and position;
- every random generator: torch's, NumPy's and Python's global ones, the buffer's, the action space's
  and the environment's own (which draws each episode's initial state);
- the environment in mid-episode: rather than MuJoCo's internal state (some tasks read quantities
  derived by the last step, which mj_setState does not restore), the environment's random state before
  the episode's reset and the episode's actions since, replayed into a fresh environment. That also
  restores the time limit's step count, and works for any deterministic gymnasium environment;
  the replayed observation must equal the saved one, or the continuation is refused;
- the step counter, the actor-update count, the progress rows so far and the training time.

Tensors are saved on the CPU and loaded onto whichever device the continuing run uses, so a
checkpoint is free of the device that wrote it. A run on a GPU also keeps that device's random state;
whether a GPU run continues bit for bit has not been tried (no machine here has a GPU).

Checkpoint folders: learner.pt (tensors, loaded with weights_only), experience.npz (arrays, loaded
without pickle) and state.json. Where they are kept (a local folder for `qsearch train`, Tune's trial
storage for a search) is the caller's Checkpoints.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from qsearch.config import CHECKPOINTS_KEPT, TrainConfig
from qsearch.errors import QsearchError

FORMAT, VERSION = "qsearch-learner-checkpoint", 1
STATE, TENSORS, ARRAYS = "state.json", "learner.pt", "experience.npz"


class Checkpoints(Protocol):
    """Where a run's checkpoints go. every: environment steps between two (0: none). resume_from: a
    local folder holding the checkpoint to continue from, or None to start at step 0. save(step,
    write) has write(folder) fill a new folder and keeps it (and, at most, the one before)."""
    every: int
    resume_from: Path | None

    def save(self, step: int, write: Callable[[Path], None]) -> None: ...


class FolderCheckpoints:
    """Checkpoints of `qsearch train` in a local folder (step-000000020000/, ...), the latest CHECKPOINTS_KEPT kept.
    Each is written beside its place and renamed into it: whole or absent."""

    def __init__(self, root: Path, every: int, resume: bool):
        self.root, self.every = Path(root), check_every(every, "--checkpoint-every")
        latest = self.latest()
        if resume and latest is None:
            raise QsearchError(f"--resume: no checkpoint in {self.root} to continue from")
        if not resume and latest is not None:
            raise QsearchError(f"{self.root} holds checkpoints of an interrupted run: pass --resume to continue "
                               "it, or remove the folder to start again")
        if latest is not None:
            read_state(latest)  # refused now, before any work
        self.resume_from = latest

    def latest(self) -> Path | None:
        done = sorted(p for p in self.root.glob("step-*") if (p / STATE).exists())
        return done[-1] if done else None

    def save(self, step: int, write: Callable[[Path], None]) -> None:
        final = self.root / f"step-{step:012d}"
        tmp = self.root / f".{final.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            write(tmp)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise write_error(step, self.root, e, self.latest()) from None
        tmp.rename(final)
        for old in sorted(self.root.glob("step-*"))[:-CHECKPOINTS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Once the bundle is written the checkpoints have served."""
        shutil.rmtree(self.root, ignore_errors=True)


def write_error(step: int, where, e: OSError, previous) -> QsearchError:
    """A checkpoint that could not be written (a full disk, say): one line, and what is still there."""
    kept = f"the previous one is intact: {previous}" if previous else "no earlier checkpoint"
    return QsearchError(f"checkpoint at step {step:,} not written to {where}: {e.strerror or e}; {kept}")


def check_every(every, name: str = "checkpoint_every") -> int:
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise QsearchError(f"{name} must be 0 (no checkpoints) or a number of environment steps, got {every!r}")
    return every


def read_state(folder: Path, cfg: TrainConfig | None = None) -> dict:
    """The checkpoint's state.json (step, progress rows, ...); a foreign or newer folder is refused, and
    so is one written by another configuration than cfg (when given)."""
    path = Path(folder) / STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise QsearchError(f"{folder}: not a readable qsearch checkpoint ({e})") from None
    if state.get("format") != FORMAT or state.get("version", VERSION + 1) > VERSION:
        raise QsearchError(f"{folder}: not a qsearch learner checkpoint of version <= {VERSION}")
    if cfg is not None and state["config"] != json.loads(json.dumps(cfg.to_dict())):
        raise QsearchError(f"{folder}: the checkpoint was written by another configuration; "
                           "it can only continue the run that wrote it")
    return state


@dataclass
class LearnerCheckpoint:
    """The learner's side: what to save, when, and putting it back.

    parts: name -> nn.Module, torch optimizer or tensor (modified in place by the learner), on `device`."""
    checkpoints: Checkpoints | None
    cfg: TrainConfig
    parts: dict
    exp: object  # rl.experience.Experience
    monitor: object  # rl.common.Monitor
    device: torch.device = torch.device("cpu")

    def due(self, step: int) -> bool:
        c = self.checkpoints
        return c is not None and c.every > 0 and step % c.every == 0 and step < self.cfg.total_steps

    def save(self, step: int, **counts: int) -> None:
        self.checkpoints.save(step, lambda folder: self._write(folder, step, counts))

    def restore(self) -> tuple[int, dict]:
        """Put the latest checkpoint back. Returns (the step to continue from, the saved counts);
        (0, {}) when there is none."""
        folder = self.checkpoints.resume_from if self.checkpoints is not None else None
        if folder is None:
            return 0, {}
        state = read_state(folder, self.cfg)
        tensors = torch.load(Path(folder) / TENSORS, weights_only=True, map_location="cpu")
        for name, part in self.parts.items():
            _load_part(part, tensors["parts"][name], state["counters"].get(name, {}))
        with np.load(Path(folder) / ARRAYS, allow_pickle=False) as arrays:
            self.exp.load_state(state["experience"], dict(arrays))
        torch.set_rng_state(tensors["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in tensors:
            torch.cuda.set_rng_state(tensors["cuda_rng"], self.device)
        np.random.set_state(_numpy_legacy(state["rng"]["numpy"]))
        random.setstate(_python_random(state["rng"]["python"]))
        self.monitor.load_state(state["monitor"])
        return state["step"], state["counts"]

    def _write(self, folder: Path, step: int, counts: dict) -> None:
        exp_state, arrays = self.exp.state()
        tensors = {"parts": {name: _cpu(_part_state(p)) for name, p in self.parts.items()},
                   "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            tensors["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        torch.save(tensors, folder / TENSORS)
        np.savez(folder / ARRAYS, **arrays)
        write_state(folder, self.cfg, step, self.monitor.state(), counts=counts, experience=exp_state,
                    counters={name: _counters(p) for name, p in self.parts.items() if isinstance(p, nn.Module)},
                    rng={"numpy": _jsonable(np.random.get_state()), "python": _jsonable(random.getstate())})


def write_state(folder: Path, cfg: TrainConfig, step: int, monitor: dict, **more) -> None:
    """state.json, written last: a folder without it is incomplete. monitor: {"rows": every progress
    row so far, "seconds": training time so far}."""
    state = {"format": FORMAT, "version": VERSION, "step": step, "config": cfg.to_dict(), "monitor": monitor, **more}
    (Path(folder) / STATE).write_text(json.dumps(state) + "\n")


def _part_state(part):
    if isinstance(part, nn.Module):  # raw, not state_dict: see the module docstring
        return {"parameters": dict(part.named_parameters()), "buffers": dict(part.named_buffers())}
    if isinstance(part, torch.optim.Optimizer):
        return part.state_dict()
    return part.detach().clone()  # a tensor (SAC's log alpha)


def _cpu(value):
    """value with every tensor on the CPU (the same tensors if they are there already)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu(v) for v in value]
    return value


@torch.no_grad()
def _load_part(part, saved, counters: dict) -> None:
    """saved (on the CPU) into part, on whichever device part is: copy_ crosses devices, and an
    optimizer's load_state_dict moves its state to its parameters' device."""
    if isinstance(part, nn.Module):
        # copy_ in place: the optimizers hold these tensors, and the QAT actor's fast path sees the
        # version bump and drops its cached quantized weights.
        for kind, named in (("parameters", part.named_parameters()), ("buffers", part.named_buffers())):
            for name, t in named:
                t.copy_(saved[kind][name])
        modules = dict(part.named_modules())
        for name, count in counters.items():
            modules[name].counter = count
    elif isinstance(part, torch.optim.Optimizer):
        part.load_state_dict(saved)
    else:
        part.copy_(saved)


def _counters(module: nn.Module) -> dict[str, int]:
    """brevitas' warm-up step counts (ParameterFromRuntimeStatsScaling.counter), by module name."""
    return {name: int(m.counter) for name, m in module.named_modules() if hasattr(m, "collect_stats_steps")}


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _numpy_legacy(s: list):
    return (s[0], np.array(s[1], np.uint32), s[2], s[3], s[4])


def _python_random(s: list):
    return (s[0], tuple(s[1]), s[2])
