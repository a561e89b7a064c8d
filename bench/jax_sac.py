"""The fastest SAC a user could pick instead: sbx's (Stable-Baselines-Jax) SAC, timed like
bench/train_throughput.py times qsearch's. Runs in a virtual environment of its own (JAX, flax and
sbx are not qsearch's dependencies, nor held to its constraints):

    python3 -m venv runs/jax-venv && runs/jax-venv/bin/pip install sbx-rl "gymnasium[mujoco]"

bench/train_throughput.py --jax-python runs/jax-venv/bin/python starts this script on one core
(taskset -c 0, XLA's CPU thread flags) and prints its steps/s beside the others. On its own:

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        taskset -c 0 runs/jax-venv/bin/python bench/jax_sac.py --env Hopper-v5 --steps 2000

Prints one JSON line: steps per wall and per CPU second over `steps` learning steps measured after
the first 1,000 (which hold XLA's compilation), and the CPU seconds of those first 1,000.
"""
from __future__ import annotations

import argparse
import json
import time

import torch  # stable-baselines3 (sbx's base) imports it; one thread, as every variant gets
from sbx import SAC
from stable_baselines3.common.callbacks import BaseCallback

LEARNING_STARTS, COMPILED = 1_000, 2_000  # as bench/train_throughput.py: learning from 1,000, measured from 2,000


class Marks(BaseCallback):
    """(wall, CPU) time at the given environment steps."""

    def __init__(self, at: set[int]):
        super().__init__()
        self.at, self.marks = at, {}

    def _on_step(self) -> bool:
        if self.num_timesteps in self.at:
            self.marks[self.num_timesteps] = (time.perf_counter(), time.process_time())
        return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=2000)
    a = p.parse_args()
    torch.set_num_threads(1)
    # qsearch's SAC shapes: two 256-wide hidden layers in the actor and both critics, batch 256, one
    # critic update per step and on average one actor update (CleanRL updates the actor twice every
    # other step; sbx once every step)
    model = SAC("MlpPolicy", a.env, learning_starts=LEARNING_STARTS, batch_size=256, buffer_size=1_000_000,
                policy_kwargs={"net_arch": [256, 256]}, seed=0, verbose=0)
    marks = Marks({LEARNING_STARTS, COMPILED, COMPILED + a.steps})
    model.learn(COMPILED + a.steps, callback=marks)
    (w0, c0), (w1, c1), (_, cs) = marks.marks[COMPILED], marks.marks[COMPILED + a.steps], marks.marks[LEARNING_STARTS]
    print(json.dumps({"wall": a.steps / (w1 - w0), "cpu": a.steps / (c1 - c0), "first_1k_cpu": c0 - cs}))


if __name__ == "__main__":
    main()
