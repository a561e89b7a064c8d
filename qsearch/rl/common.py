"""Pieces the three learners share: the result, the device, the critic ensemble, target updates, the
actor's mode switch, and the bookkeeping for progress reports, periodic evaluation and the history."""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from qsearch.config import FieldError, TrainConfig
from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant.fastpath import ready, scaling_impl
from qsearch.rl.evaluate import evaluate, torch_policy
from qsearch.rl.normalize import RunningNorm

REPORT_EVERY = 1_000  # environment steps between progress reports
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds apart from the training environment's


@dataclass
class TrainResult:
    actor: nn.Module  # QuantActor, in eval mode
    obs_norm: ObsNorm  # frozen at the end of training; part of the deployed policy
    action_scale: np.ndarray  # float32; action = tanh(actor(obs_norm(obs))) * action_scale + action_bias
    action_bias: np.ndarray
    history: list[dict] = field(default_factory=list)  # one row per evaluation, see Monitor.report
    train_seconds: float = 0.0
    actor_updates: int = 0  # gradient steps of the actor (= its training-mode calls)


def torch_device(device: str | torch.device) -> torch.device:
    """Where a learner's networks, replay batches and updates run: "cpu", "cuda" or "cuda:N" (or such a
    torch.device). How a run executes, not what it trains: not part of the TrainConfig, the trial's
    identity or the bundle. Anything else, or CUDA where torch sees none, is refused."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        d = None
    if d is None or d.type not in ("cpu", "cuda"):
        raise FieldError("device", f"must be cpu, cuda or cuda:N, got {str(device)!r}")
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise FieldError("device", f"{device}: torch sees no CUDA device here (torch.cuda.is_available() is False)")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise FieldError("device", f"{device}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return d


def diverged(what: str, value, step: int) -> QsearchError:
    return QsearchError(f"training diverged: {what} is {value} at step {step}")


def check_action(action: np.ndarray, step: int) -> None:
    """Stop at the first non-finite action, before the simulator sees it (losses are read only every
    REPORT_EVERY steps; a diverged network makes NaN actions right away)."""
    if not np.isfinite(action).all():
        raise diverged("the action", action.tolist(), step)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class QEnsemble(nn.Module):
    """n critics Q(s, a) with two hidden ReLU layers, held as one batched MLP: weights of shape
    (n, in, out) and one baddbmm per layer, so a single forward/backward covers all of them.
    Initialized like n independent nn.Linear stacks (uniform in +-1/sqrt(fan_in))."""

    def __init__(self, obs_dim: int, act_dim: int, width: int, n: int = 2):
        super().__init__()
        dims = [obs_dim + act_dim, width, width, 1]
        self.w1, self.b1 = _ensemble_linear(n, dims[0], dims[1])
        self.w2, self.b2 = _ensemble_linear(n, dims[1], dims[2])
        self.w3, self.b3 = _ensemble_linear(n, dims[2], dims[3])
        self.n = n

    def forward(self, obs: torch.Tensor, act: torch.Tensor, n: int | None = None) -> torch.Tensor:
        """(B, obs_dim), (B, act_dim) -> (n, B): the first n critics' values (all by default)."""
        w1, b1, w2, b2, w3, b3 = self.w1, self.b1, self.w2, self.b2, self.w3, self.b3
        if n is not None and n != self.n:  # sliced only when asked: a slice's backward zero-fills a copy
            w1, b1, w2, b2, w3, b3 = (p[:n] for p in (w1, b1, w2, b2, w3, b3))
        x = torch.cat([obs, act], 1)
        h = torch.relu(torch.baddbmm(b1, x.expand(w1.shape[0], *x.shape), w1))
        h = torch.relu(torch.baddbmm(b2, h, w2))
        return torch.baddbmm(b3, h, w3).squeeze(-1)


def _ensemble_linear(n: int, d_in: int, d_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    bound = 1.0 / math.sqrt(d_in)
    w = nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound))
    b = nn.Parameter(torch.empty(n, 1, d_out).uniform_(-bound, bound))
    return w, b


def fused_adam(params, lr: float) -> torch.optim.Adam:
    """For the critics and alpha. Fused: one kernel over all tensors, ~3x faster than Adam's default
    per-tensor loop on CPU."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def actor_adam(params, lr: float) -> torch.optim.Adam:
    """Not fused: the fused kernel updates parameters without bumping their version counters, and the
    QAT actor's no-grad path reuses its quantized weights until a parameter's version changes, so it
    would keep acting with the initial weights. foreach bumps them and is still one call."""
    return torch.optim.Adam(params, lr=lr, foreach=True)


def target_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy for a target network (only ever run under no_grad, in eval mode)."""
    target = copy.deepcopy(module).eval()
    target.requires_grad_(False)
    return target


@torch.no_grad()
def soft_update(target_params: list[torch.Tensor], params: list[torch.Tensor], tau: float) -> None:
    """target <- (1 - tau) * target + tau * online, in one fused call over all tensors."""
    torch._foreach_lerp_(target_params, params, tau)


def sync_warmup(target_actor, actor) -> None:
    """Give a target actor the online actor's activation-scale warm-up state.

    A target actor never runs in training mode, so on its own its brevitas scales would stay at the
    initial 1.0 forever. Until the online actor has finished its warm-up, copy its counters,
    running statistics and scales; afterwards the scales are ordinary parameters that soft_update
    averages like the weights. Cheap: once both counters match, this only compares integers."""
    if not actor.quantized:
        return
    pairs = zip(map(scaling_impl, target_actor.act_quantizers()), map(scaling_impl, actor.act_quantizers()))
    for t, o in pairs:
        if t.counter != o.counter:
            t.counter = o.counter
            with torch.no_grad():
                t.buffer.copy_(o.buffer)
                t.value.copy_(o.value)


class ModeSwitch:
    """actor.train() / actor.eval() from a flat list of its modules, while brevitas' warm-up needs them.

    The brevitas actor has ~300 submodules and nn.Module.train's recursion costs ~2 ms per call on
    these machines, which the learners would pay twice per actor update; setting the same `training`
    flags directly costs ~0.1 ms. (brevitas overrides no train(), so the effect is identical.)
    Only brevitas' warm-up reads the flags: once it is over (fastpath.ready), the fast path runs
    whatever they say, so switching to training mode does nothing, and is skipped (it was ~0.16 ms of
    a ~11 ms QAT SAC step, cProfile). An FP32 actor reads none."""

    def __init__(self, actor: nn.Module):
        self.actor, self.modules = actor, list(actor.modules())
        self.on = False  # this switch put the actor in training mode

    def __call__(self, training: bool) -> None:
        if training and (not self.actor.quantized or ready(self.actor)):
            return
        if training or self.on:
            for m in self.modules:
                object.__setattr__(m, "training", training)
            self.on = training


class Monitor:
    """Progress reports every REPORT_EVERY steps, evaluations every cfg.eval_every steps and at the
    end, a history row per evaluation, and the divergence check on the losses."""

    def __init__(self, cfg: TrainConfig, progress: Callable[[dict], None] | None, actor: nn.Module,
                 running: RunningNorm):
        self.cfg, self.progress, self.actor, self.running = cfg, progress, actor, running
        self.rows: list[dict] = []  # every report, in order
        self.start = self.last_time = time.perf_counter()
        self.last_step = 0
        self.earlier_seconds = 0.0  # training time before the checkpoint this run continues from

    @property
    def history(self) -> list[dict]:
        """The rows with an evaluation: the bundle's history.json."""
        return [row for row in self.rows if "eval_return_mean" in row]

    def due(self, step: int) -> bool:
        return step % REPORT_EVERY == 0 or step % self.cfg.eval_every == 0 or step == self.cfg.total_steps

    def report(self, step: int, losses: dict) -> None:
        """step: environment steps done. losses: name -> tensor (or None before learning starts)."""
        now = time.perf_counter()
        metrics = {"step": step, "steps_per_s": (step - self.last_step) / max(now - self.last_time, 1e-9)}
        for name, value in losses.items():
            if value is None:
                continue
            value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            if not math.isfinite(value):
                raise diverged(name, value, step)
            metrics[name] = value
        if step % self.cfg.eval_every == 0 or step == self.cfg.total_steps:
            result = evaluate(torch_policy(self.actor), self.cfg.env_id, self.running.frozen(),
                              self.cfg.eval_episodes, EVAL_SEED_OFFSET + self.cfg.seed, observe=self.cfg.observe)
            metrics["eval_return_mean"], metrics["eval_return_std"] = result.mean, result.std
        self.rows.append(metrics)
        if self.progress is not None:
            self.progress(dict(metrics))
        # The next window starts after the evaluation, so steps_per_s measures training alone.
        self.last_time, self.last_step = time.perf_counter(), step

    @property
    def seconds(self) -> float:
        return self.earlier_seconds + time.perf_counter() - self.start

    def state(self) -> dict:
        return {"rows": self.rows, "seconds": self.seconds, "last_step": self.last_step}

    def load_state(self, state: dict) -> None:
        self.rows, self.earlier_seconds, self.last_step = state["rows"], state["seconds"], state["last_step"]
        self.start = self.last_time = time.perf_counter()
