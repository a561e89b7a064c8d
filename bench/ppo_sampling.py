"""Environment steps per second of one PPO trial (RLlib, qsearch's module) with 1 and 2 env runners,
QAT against FP32, and the share of each PPO iteration spent sampling vs learning.

One process, one local Ray, the variants one after another (the machine is shared and noisy: compare
ratios within one run). Each variant builds RLlib's algorithm as `qsearch train --algo ppo` does
(CleanRL's settings: 2,048 steps per iteration, 10 epochs x 32 minibatches), runs one iteration that
is not timed (Ray actors start, and a QAT actor spends it on its 300-forward warm-up in brevitas'
eager forward), then times `--iters` iterations. The split comes from wrapping the two calls PPO's
training step makes: sampling (synchronous_parallel_sample, all env runners) and the learner update;
the rest (weight and connector syncs, bookkeeping) is reported as "other".

A cluster trial with N runners is then expected to take  sample / (N / n) + learn + other  seconds per
iteration (sampling parallel over runners, learning not), printed for 16 runners.

    .venv/bin/python bench/ppo_sampling.py [--env InvertedPendulum-v5] [--width 64] [--iters 3]
"""
from __future__ import annotations

import argparse
import time

from qsearch import ray_session
from qsearch.config import PolicyConfig, PPOConfig, QuantBits, TrainConfig
from qsearch.rl import ppo


class Split:
    """Wall seconds inside the wrapped sampling and learner calls."""

    def __init__(self, algo):
        import ray.rllib.algorithms.ppo.ppo as rllib_ppo

        self.sample = self.learn = 0.0
        self._module, self._sample_fn = rllib_ppo, rllib_ppo.synchronous_parallel_sample
        rllib_ppo.synchronous_parallel_sample = self._timed(self._sample_fn, "sample")
        algo.learner_group.update = self._timed(algo.learner_group.update, "learn")

    def _timed(self, fn, name):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(self, name, getattr(self, name) + time.perf_counter() - t0)
        return wrapper

    def close(self):
        self._module.synchronous_parallel_sample = self._sample_fn


def lifetime_steps(result: dict) -> int:
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


def measure(env_id: str, width: int, quant, runners: int, iters: int) -> dict:
    cfg = TrainConfig(env_id=env_id, algo="ppo", policy=PolicyConfig(width=width, quant=quant),
                      total_steps=(iters + 1) * 2048, algo_config=PPOConfig(env_runners=runners))
    algo = ppo.algorithm_config(cfg).build_algo()
    try:
        start = lifetime_steps(algo.train())  # untimed: actors start; a QAT actor's warm-up
        split = Split(algo)
        t0 = time.perf_counter()
        for _ in range(iters):
            result = algo.train()
        wall = time.perf_counter() - t0
        steps = lifetime_steps(result) - start
        split.close()
    finally:
        algo.stop()
    other = wall - split.sample - split.learn
    return {"steps_per_s": steps / wall, "sample": split.sample / iters, "learn": split.learn / iters,
            "other": other / iters, "runners": runners}


def expected(m: dict, runners: int) -> float:
    """Steps/s of a trial with `runners` env runners from the measured split (sampling scales, the rest not)."""
    t = m["sample"] * m["runners"] / runners + m["learn"] + m["other"]
    return 2048 / t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="InvertedPendulum-v5")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--iters", type=int, default=3)
    a = p.parse_args()
    ray_session.start(cpus=2)
    qat = QuantBits(bits_weight=3, bits_act=3)
    print(f"{a.env}, actor width {a.width}, 2,048 steps per iteration, {a.iters} timed iterations each")
    print(f"{'variant':<12} {'runners':>7} {'steps/s':>8} {'sample s':>9} {'learn s':>8} {'other s':>8} "
          f"{'learn %':>8} {'16 runners':>10}")
    rows = {}
    for name, quant in (("fp32", None), ("qat w3a3", qat)):
        for runners in (1, 2):
            m = rows[name, runners] = measure(a.env, a.width, quant, runners, a.iters)
            total = m["sample"] + m["learn"] + m["other"]
            print(f"{name:<12} {runners:>7} {m['steps_per_s']:>8.0f} {m['sample']:>9.2f} {m['learn']:>8.2f} "
                  f"{m['other']:>8.2f} {100 * m['learn'] / total:>7.0f}% {expected(m, 16):>10.0f}", flush=True)
    for name in ("fp32", "qat w3a3"):
        print(f"{name}: 2 runners / 1 runner = {rows[name, 2]['steps_per_s'] / rows[name, 1]['steps_per_s']:.2f}")
    for runners in (1, 2):
        print(f"{runners} runner(s): QAT / FP32 = "
              f"{rows['qat w3a3', runners]['steps_per_s'] / rows['fp32', runners]['steps_per_s']:.2f}")


if __name__ == "__main__":
    main()
