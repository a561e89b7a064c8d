"""What trial checkpoints cost a Hopper-v5 SAC trial (qsearch/rl/checkpoint.py), one thread:

1. a QAT trial (256-wide networks, 2-bit core) trained past its learning start with a checkpoint every
   --every steps: its learning steps/s, and each checkpoint's write time and size at that buffer fill;
2. a checkpoint of the same learner with the replay buffer full at --fill transitions (the paper's
   1M-step run: 1M), written and read back into a fresh learner: write time, size, time to continue;
3. the replay of an episode in progress on continuation: 1,000 Hopper-v5 steps (its time limit).

From these: the overhead at the default interval (config.CHECKPOINT_EVERY), writing at the full
buffer, as a percentage of the time the trial takes for that many steps, and the minutes of training
a kill loses at most (one interval).

    .venv/bin/python bench/checkpoint_cost.py [--steps 6000] [--every 2000] [--fill 1000000] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from qsearch.config import CHECKPOINT_EVERY, PolicyConfig, QuantBits, SACConfig, TrainConfig
from qsearch.quant.actor import QuantActor
from qsearch.rl import sac
from qsearch.rl.checkpoint import FolderCheckpoints, LearnerCheckpoint
from qsearch.rl.common import Monitor, QEnsemble, actor_adam, fused_adam, target_copy
from qsearch.rl.envs import make_env
from qsearch.rl.experience import Experience

LEARNING_STARTS = 1_000


def config(steps: int) -> TrainConfig:
    return TrainConfig(env_id="Hopper-v5", algo="sac", total_steps=steps, seed=0, eval_every=steps, eval_episodes=1,
                       policy=PolicyConfig(quant=QuantBits(bits_weight=2, bits_act=2)),
                       algo_config=SACConfig(learning_starts=LEARNING_STARTS))


class TimedFolder(FolderCheckpoints):
    def __init__(self, root, every):
        super().__init__(root, every, resume=False)
        self.saves = []

    def save(self, step, write):
        t0 = time.perf_counter()
        super().save(step, write)
        seconds = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in self.latest().iterdir())
        self.saves.append({"step": step, "seconds": seconds, "bytes": size})
        print(f"  checkpoint at step {step:,}: {seconds:.2f} s, {size / 1e6:.1f} MB", flush=True)


def short_trial(steps: int, every: int, root: Path) -> dict:
    rates = []

    def progress(m):
        if m["step"] > LEARNING_STARTS + 1_000:  # past the learning start and the actor's warm-up
            rates.append(m["steps_per_s"])
        print(f"  step {m['step']:,}: {m['steps_per_s']:.1f} steps/s", flush=True)

    sink = TimedFolder(root, every)
    sac.train(config(steps), progress, sink)
    return {"steps_per_s": float(np.median(rates)), "saves": sink.saves}


def learner(cfg: TrainConfig, fill: int, filled: bool):
    """A learner as sac.train builds one with a buffer of `fill` transitions, filled or empty."""
    exp = Experience(cfg, fill)
    if filled:
        rng = np.random.default_rng(0)
        rb = exp.rb
        for name in ("obs", "next_obs", "actions", "rewards", "terminations"):
            a = getattr(rb, name)
            a[...] = rng.standard_normal(a.shape, dtype=np.float32)
        rb.size, rb.pos = fill, 0
    args = cfg.algo_config
    actor = QuantActor(exp.obs_dim, exp.act_dim, cfg.policy)
    log_std = sac.LogStd(exp.obs_dim, exp.act_dim, args.sigma_width)
    qf = QEnsemble(exp.obs_dim, exp.act_dim, args.critic_width)
    parts = {"actor": actor, "log_std": log_std, "qf": qf, "qf_target": target_copy(qf),
             "q_optimizer": fused_adam(qf.parameters(), args.q_lr),
             "actor_optimizer": actor_adam([*actor.parameters(), *log_std.parameters()], args.policy_lr)}
    return LearnerCheckpoint(None, cfg, parts, exp, Monitor(cfg, None, actor, exp.running))


def full_buffer(fill: int, root: Path) -> dict:
    cfg = config(fill)
    saver = learner(cfg, fill, filled=True)
    sink = FolderCheckpoints(root, fill, resume=False)
    saver.checkpoints = sink
    t0 = time.perf_counter()
    saver.save(fill // 2)
    write = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in sink.latest().iterdir())
    fresh = learner(cfg, fill, filled=False)  # what a continuing process builds before restoring
    fresh.checkpoints = FolderCheckpoints(root, fill, resume=True)
    t0 = time.perf_counter()
    fresh.restore()
    restore = time.perf_counter() - t0
    assert fresh.exp.rb.size == fill
    print(f"  buffer of {fill:,}: write {write:.2f} s, {size / 1e6:.1f} MB, continue {restore:.2f} s", flush=True)
    return {"fill": fill, "write_seconds": write, "bytes": size, "restore_seconds": restore}


def episode_replay() -> float:
    env = make_env("Hopper-v5", 0)
    env.reset(seed=0)
    actions = [env.action_space.sample() for _ in range(1000)]
    t0 = time.perf_counter()
    for a in actions:
        if any(env.step(a)[2:4]):
            env.reset()
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6_000)
    p.add_argument("--every", type=int, default=2_000)
    p.add_argument("--fill", type=int, default=1_000_000)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="qsearch-ckpt-bench-"))
    try:
        print(f"1. Hopper-v5 SAC, 2-bit core, {a.steps:,} steps, a checkpoint every {a.every:,}", flush=True)
        trial = short_trial(a.steps, a.every, root / "trial")
        print(f"2. a checkpoint with {a.fill:,} transitions in the buffer", flush=True)
        full = full_buffer(a.fill, root / "full")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    replay = episode_replay()
    interval_seconds = CHECKPOINT_EVERY / trial["steps_per_s"]
    result = {"steps_per_s": trial["steps_per_s"], "saves": trial["saves"], "full": full,
              "episode_replay_seconds": replay, "default_every": CHECKPOINT_EVERY,
              "interval_minutes": interval_seconds / 60,
              "overhead_percent_at_full_buffer": 100 * full["write_seconds"] / interval_seconds}
    print(f"\nlearning steps/s: {trial['steps_per_s']:.1f}")
    print(f"default interval {CHECKPOINT_EVERY:,} steps = {interval_seconds / 60:.1f} min of training: "
          f"the most a kill loses")
    print(f"checkpoint with a full buffer ({full['fill']:,}): {full['bytes'] / 1e6:.0f} MB, written in "
          f"{full['write_seconds']:.2f} s = {result['overhead_percent_at_full_buffer']:.2f}% of an interval; "
          f"continuing takes {full['restore_seconds']:.2f} s + the episode replay (<= {replay:.2f} s)")
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
