"""Environment steps per second while learning, SAC on Hopper-v5 with 256-wide networks, one thread.

Steps are counted per second of wall time and per second of the process's CPU time. The machines
are shared and noisy: when other processes compete for the cores, wall-time figures drop unevenly
between variants, while CPU-time figures stay comparable. Compare ratios within one run.

Runs, in one process one after another so the figures are comparable (the machines are noisy, so
compare ratios within one run): the CleanRL-style FP32 reference loop, qsearch's FP32 SAC, and
qsearch's QAT SAC with a 3-bit and a 2-bit core. Each qsearch run first passes the learning start
and the actor's 300-update warm-up, whose cost is reported separately; steps/s is then measured
over the following learning steps, as in the bulk of a 1M-step run.

    .venv/bin/python bench/train_throughput.py [--steps 2000] [--env Hopper-v5] [--repeats 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cleanrl_sac_reference  # noqa: E402

from qsearch import rl  # noqa: E402
from qsearch.config import PolicyConfig, QuantBits, SACConfig, TrainConfig  # noqa: E402

LEARNING_STARTS = 1_000
WARMUP_END = 2_000  # learning steps 1,000-2,000 hold the actor's 300 warm-up updates (one update per step)


def qsearch_sac(env_id: str, quant: QuantBits | None, steps: int) -> tuple[float, float, float]:
    """(steps per wall second and per CPU second after the warm-up, CPU seconds of the first 1,000
    learning steps, warm-up included). Times come from the learners' progress reports (every 1,000 steps)."""
    marks = {}

    def progress(m):
        marks[m["step"]] = (time.perf_counter(), time.process_time())

    cfg = TrainConfig(
        env_id=env_id, algo="sac", policy=PolicyConfig(width=256, quant=quant),
        total_steps=WARMUP_END + steps, seed=0, eval_every=10**9, eval_episodes=1,
        algo_config=dataclasses.replace(SACConfig(), learning_starts=LEARNING_STARTS),
    )
    rl.train(cfg, progress)
    (w0, c0), (w1, c1), (_, cs) = marks[WARMUP_END], marks[WARMUP_END + steps], marks[LEARNING_STARTS]
    return steps / (w1 - w0), steps / (c1 - c0), c0 - cs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=2000, help="learning steps measured per variant (multiple of 1,000)")
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()
    rows = []
    for r in range(a.repeats):
        ref_wall, ref_cpu = cleanrl_sac_reference.run(a.env, LEARNING_STARTS, a.steps)
        rows.append(("CleanRL-style FP32 reference", ref_wall, ref_cpu, None, ref_wall, ref_cpu))
        for name, quant in [("qsearch SAC FP32", None),
                            ("qsearch SAC QAT core 3-bit", QuantBits.from_scope("core", 3)),
                            ("qsearch SAC QAT core 2-bit", QuantBits.from_scope("core", 2))]:
            wall, cpu, warm = qsearch_sac(a.env, quant, a.steps)
            rows.append((name, wall, cpu, warm if quant else None, ref_wall, ref_cpu))
    print(f"\n{a.env}, width 256, batch 256, one thread, {a.steps} learning steps per variant")
    print(f"{'variant':30s} {'steps/wall s':>12s} {'x ref':>6s} {'steps/CPU s':>12s} {'x ref':>6s} {'first 1k learning steps, CPU s':>31s}")
    for name, wall, cpu, warm, ref_wall, ref_cpu in rows:
        print(f"{name:30s} {wall:12.1f} {wall / ref_wall:6.2f} {cpu:12.1f} {cpu / ref_cpu:6.2f} "
              f"{'' if warm is None else f'{warm:31.1f}'}")


if __name__ == "__main__":
    main()
