"""Environment steps per second while learning: recurrent SAC (a GRU encoder) against MLP SAC on the
same task, one thread, in one process one after another (the machines are noisy: compare ratios
within one run), and the quantized GRU's window forward and backward through brevitas' own graph
against qsearch's fused recurrence (quant/fastpath.py's _Recurrence).

Variants on InvertedPendulum-v5 with positions only (what a recurrent policy is for), 64-wide MLP,
8-bit core: MLP FP32, MLP QAT, GRU FP32, GRU QAT (encoder width 32). Each run passes the learning start
and the actor's 300-update warm-up first; steps/s is measured over the learning steps after it, in wall
time and in the process's CPU time.

    .venv/bin/python bench/recurrent_throughput.py [--steps 2000] [--encoder-width 32]
"""
from __future__ import annotations

import argparse
import time

import torch

from qsearch import rl
from qsearch.config import PolicyConfig, QuantBits, SACConfig, TrainConfig
from qsearch.quant import fastpath
from qsearch.quant.actor import QuantActor
from qsearch.quant.gru import update
from qsearch.rl.common import REPORT_EVERY

ENV, LEARNING_STARTS, WARMUP = "InvertedPendulum-v5", 1_000, 300


def learning_rate(policy: PolicyConfig, steps: int) -> tuple[float, float]:
    """(steps/s wall, steps/s CPU) over `steps` learning steps after the warm-up."""
    marks = {}

    def progress(m):
        marks[m["step"]] = (time.perf_counter(), time.process_time())

    start = -(-(LEARNING_STARTS + WARMUP) // REPORT_EVERY) * REPORT_EVERY  # rounded up to the next progress report
    cfg = TrainConfig(env_id=ENV, policy=policy, total_steps=start + steps, eval_every=10**9, eval_episodes=1,
                      observe="positions", algo_config=SACConfig(learning_starts=LEARNING_STARTS))
    rl.train(cfg, progress)
    (w0, c0), (w1, c1) = marks[start], marks[start + steps]
    return steps / (w1 - w0), steps / (c1 - c0)


def window_ms(width: int, repeats: int = 20) -> tuple[float, float]:
    """Forward and backward of one update's window batch (16 windows of 24 steps), milliseconds:
    through brevitas' autograd graph step by step, and through the fused recurrence."""
    actor = QuantActor(2, 1, PolicyConfig(width=64, encoder="gru", encoder_width=width,
                                          quant=QuantBits.from_scope("core", 8)))
    for q in actor.act_quantizers():  # past the warm-up: the fast path runs
        fastpath.scaling_impl(q).counter = 10**6
    x = torch.randn(16, 25, 2)
    grid = {k: torch.tensor(v) for k, v in actor.encoder.scales().items()}
    b = 8

    def graph():  # the same steps as separate autograd nodes, as brevitas' modules record them
        scales, _, ((w_x, b_x), (w_h, b_h)) = fastpath._params(actor, False)
        ax = fastpath._act(torch.nn.functional.linear(fastpath._act(x, scales[0], 8, True), w_x, b_x), grid["pre"], b, True)
        h, states = actor.initial_state(16), []
        for t in range(x.shape[1]):
            ah = fastpath._act(torch.nn.functional.linear(h, w_h, b_h), grid["pre"], b, True)
            h = update(ax[:, t], ah, h, lambda v: fastpath._act(torch.sigmoid(v), grid["gate"], b, False),
                       lambda v: fastpath._act(torch.tanh(v), grid["state"], b, True),
                       lambda v: fastpath._act(v, grid["state"], b, True))["h"]
            states.append(h)
        torch.stack(states, 1).sum().backward()

    def fused():
        actor.sequence(x)[1].sum().backward()

    out = []
    for f in (graph, fused):
        f()
        t = time.perf_counter()
        for _ in range(repeats):
            f()
        out.append((time.perf_counter() - t) / repeats * 1e3)
    return out[0], out[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2_000)
    p.add_argument("--encoder-width", type=int, default=32)
    a = p.parse_args()
    torch.set_num_threads(1)
    graph, fused = window_ms(a.encoder_width)
    print(f"GRU window forward+backward (16 x 24 steps): autograd graph {graph:.1f} ms, fused recurrence {fused:.1f} ms "
          f"({graph / fused:.1f}x)")
    q8 = QuantBits.from_scope("core", 8)
    variants = {"MLP FP32": PolicyConfig(width=64, quant=None), "MLP QAT": PolicyConfig(width=64, quant=q8),
                "GRU FP32": PolicyConfig(width=64, quant=None, encoder="gru", encoder_width=a.encoder_width),
                "GRU QAT": PolicyConfig(width=64, quant=q8, encoder="gru", encoder_width=a.encoder_width)}
    rows = {name: learning_rate(policy, a.steps) for name, policy in variants.items()}
    base = rows["MLP QAT"][1]
    print(f"{'variant':<10} {'steps/s wall':>13} {'steps/s CPU':>12} {'CPU vs MLP QAT':>15}")
    for name, (wall, cpu) in rows.items():
        print(f"{name:<10} {wall:>13.1f} {cpu:>12.1f} {cpu / base:>14.2f}x")


if __name__ == "__main__":
    main()
