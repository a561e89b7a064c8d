"""Where QAT SAC's extra time per step goes, and whether compiling the critics' update pays, on one core.

1. The actor's share of two SAC steps (policy_frequency 2: two gradient updates, one refill of the
   no-grad weight cache, two batch-1 actions and two batch-256 next-action passes), for the FP32 actor
   and the QAT actor with a 3-bit core, past the activation warm-up, Hopper-v5's shapes, width 256.
   Timed without the profiler, then profiled with torch.profiler: the operators whose self CPU time
   differs most between the two, per SAC step.
2. The critics' update (target values, both critics' loss, backward, fused Adam, soft update) eager
   and with its target and loss functions through torch.compile (inductor), then the same for the FP32
   actor's update, each with the compile's time (wall time: inductor compiles in worker processes)
   from a cold cache (a fresh TORCHINDUCTOR_CACHE_DIR) and the break-even step count.

    PYTHONPATH=. .venv/bin/python bench/qat_overhead.py [--iterations 300]

Measured 2026-12-07 00:21 with the machine to itself, `taskset -c 0`, torch 2.13.0+cpu, at 1a36023 (before
the FP32 actor's part was added):

    actor's share of a SAC step, CPU ms (mean of 300 pairs of steps): FP32 2.693, QAT core 3 4.554; difference 1.861

    operator (self CPU per SAC step)               calls FP32 calls QAT  us FP32   us QAT QAT - FP32
    aten::mul                                            26.0      74.5     56.6    306.8      250.2
    _LinearQDQ                                            0.0       4.5      0.0    169.1      169.1
    aten::div                                             2.0      40.5      7.2    154.3      147.1
    _LinearQDQBackward                                    0.0       3.0      0.0    114.6      114.6
    _QDQ                                                  0.0       4.0      0.0     80.1       80.1
    aten::abs                                             0.0      21.0      0.0     71.9       71.9
    aten::max                                             0.0       4.5      0.0     68.5       68.5
    aten::addcmul                                         0.0       8.5      0.0     65.0       65.0
    aten::round                                           0.0      13.0      0.0     63.7       63.7
    _QDQBackward                                          0.0       4.0      0.0     62.1       62.1
    aten::clamp                                           0.0       8.5      0.0     54.2       54.2
    ScalarClampMinSteFn                                   0.0       6.0      0.0     41.9       41.9
    aten::sub                                             5.0       8.0     12.8     52.4       39.6
    aten::clamp_                                          0.0      12.5      0.0     36.9       36.9
    aten::addmm                                          15.0      15.0    598.9    633.9       35.0
    aten::sum                                             8.0      15.0     44.9     79.3       34.4
    aten::eq_                                             0.0       8.5      0.0     27.8       27.8
    aten::_to_copy                                       49.0      78.5     33.0     58.7       25.7
    autograd::engine::evaluate_function: _LinearQD        0.0       3.0      0.0     23.8       23.8
    Optimizer.step#Adam.step                              1.0       1.0    228.9    251.2       22.3
    all operators                                                         3018.8   4570.7     1552.0

    critics' update, CPU ms per step: eager 3.488, compiled 3.393 (x1.03); first compiled call 13.7 s
    (1.5 CPU s in this process; cold cache); break-even 144,326 steps

A later run (00:24, the script as it is now, with the actor's part): critics' update x1.06 (3.175
against 3.009 ms; compile 12.3 s), FP32 actor's update x0.99 (3.620 against 3.667 ms; compile 5.6 s). An
earlier run gave the critics x0.89 (2.986 against 3.357 ms). So compiling neither gains nor loses beyond
this machine's noise; at best (x1.06 on ~3 of a ~10 ms step) it is ~2% of a step, far from the 1.3x a
change of results by rounding would have to earn, and it is not used.

This session's changes (one autograd node
per quantized linear, the activation mask in place, no mode switch after the warm-up), measured by
this script's first part run alternately at 4df646b and 1a36023, three times each, QAT - FP32 per step:
2.43, 2.37, 2.23 ms before, 2.28, 2.23, 2.24 after (absolute figures move by ~10% between processes):
~0.1 ms taken out, bit for bit the same results (bench/bundle_fingerprint.py).

What the table says: QAT's extra ~1.8 ms per step is spread over ~50 more operator calls, none large:
fake quantization is a handful of element-wise passes per tensor (divide, round, clamp, mask, the
products of the backward), each a few microseconds at these sizes (a 256 x 256 multiply ~6 us), plus
the scale arithmetic on 0-dim tensors (abs, clamp, divide, ~5 us each with autograd) and about 30 us of
Python per custom autograd node and call. What fastpath.py already fuses is fused; what is left would
need one compiled kernel per quantizer, whose backward sums in another order (not the same bits), and
inductor's kernels were slower than eager here (fastpath.py's docstring). Compiling the critics'
update does not pay on this CPU: its time is the batched matrix products (bench/train_throughput.py's
floor), which inductor calls the same way, and its few element-wise operations are not worth the
guards it adds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-cold-"))  # a cold compile
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from qsearch.config import PolicyConfig, QuantBits  # noqa: E402
from qsearch.quant.actor import QuantActor  # noqa: E402
from qsearch.rl.common import ModeSwitch, QEnsemble, actor_adam, fused_adam, soft_update, target_copy  # noqa: E402
from qsearch.rl.sac import LogStd, sample_action  # noqa: E402

OBS, ACT, WIDTH, BATCH = 11, 3, 256, 256  # Hopper-v5
WARMUP = 300  # the activation quantizers' statistics warm-up, in actor updates


def actor_steps(quant: QuantBits | None):
    """A function running the actor's part of two SAC steps, on an actor past its warm-up."""
    actor = QuantActor(OBS, ACT, PolicyConfig(width=WIDTH, quant=quant)).eval()
    log_std = LogStd(OBS, ACT, WIDTH)
    params = [*actor.parameters(), *log_std.parameters()]
    optimizer, mode = actor_adam(params, 3e-4), ModeSwitch(actor)
    obs, one = torch.randn(BATCH, OBS), torch.randn(1, OBS)
    scale, bias = torch.ones(ACT), torch.zeros(ACT)

    def update():
        mode(True)
        mean = actor(obs)
        mode(False)
        pi, log_pi = sample_action(mean, log_std(obs), scale, bias)
        loss = (0.2 * log_pi - pi.sum(1)).mean()  # the critics' value is left out: not the actor's cost
        optimizer.zero_grad()
        loss.backward(inputs=params)
        optimizer.step()

    def act_and_next():
        with torch.no_grad():
            actor(one), log_std(one), actor(obs), log_std(obs)

    def two_steps():
        update(), update()
        act_and_next(), act_and_next()  # the first refills the quantized-weight cache

    for _ in range(WARMUP):
        update()
    return two_steps


def cpu_ms(f, n: int) -> float:
    for _ in range(20):
        f()
    start = time.process_time()
    for _ in range(n):
        f()
    return (time.process_time() - start) / n * 1e3


def by_operator(f, n: int) -> dict[str, tuple[float, float]]:
    """operator -> (calls, self CPU microseconds) per call of f."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            f()
    return {e.key: (e.count / n, e.self_cpu_time_total / n) for e in prof.key_averages()}


def actor_share(n: int) -> None:
    variants = {"FP32": actor_steps(None), "QAT core 3": actor_steps(QuantBits.from_scope("core", 3))}
    ms = {name: cpu_ms(f, n) / 2 for name, f in variants.items()}  # per SAC step
    print(f"actor's share of a SAC step, CPU ms (mean of {n} pairs of steps): "
          + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()) + f"; difference {ms['QAT core 3'] - ms['FP32']:.3f}")
    ops = {name: by_operator(f, n // 2) for name, f in variants.items()}
    fp, q = ops["FP32"], ops["QAT core 3"]
    rows = sorted(((q.get(k, (0, 0))[1] - fp.get(k, (0, 0))[1]) / 2, k) for k in set(fp) | set(q))[::-1]
    print(f"\n{'operator (self CPU per SAC step)':46s} {'calls FP32':>10s} {'calls QAT':>9s} {'us FP32':>8s} {'us QAT':>8s} {'QAT - FP32':>10s}")
    for diff, k in rows[:20]:
        (cf, tf), (cq, tq) = fp.get(k, (0, 0)), q.get(k, (0, 0))
        print(f"{k[:46]:46s} {cf / 2:10.1f} {cq / 2:9.1f} {tf / 2:8.1f} {tq / 2:8.1f} {diff:10.1f}")
    print(f"{'all operators':46s} {'':10s} {'':9s} {sum(t for _, t in fp.values()) / 2:8.1f} "
          f"{sum(t for _, t in q.values()) / 2:8.1f} {sum(d for d, _ in rows):10.1f}")


def critic_update(n: int) -> None:
    qf = QEnsemble(OBS, ACT, WIDTH)
    qf_target = target_copy(qf)
    optimizer, pairs = fused_adam(qf.parameters(), 3e-4), (list(qf_target.parameters()), list(qf.parameters()))
    obs, next_obs, actions, next_actions = (torch.randn(BATCH, d) for d in (OBS, OBS, ACT, ACT))
    rewards, terminations, next_log_pi, alpha = torch.randn(BATCH), torch.zeros(BATCH), torch.randn(BATCH), torch.tensor(0.2)

    def target():  # as rl/sac.py
        with torch.no_grad():
            min_qf_next = qf_target(next_obs, next_actions).amin(0) - alpha * next_log_pi
            return rewards + (1 - terminations) * 0.99 * min_qf_next

    def loss(next_q):
        return (qf(obs, actions) - next_q).square().mean(1).sum()

    def step(target, loss):
        def run():
            next_q = target()
            q_loss = loss(next_q)
            optimizer.zero_grad()
            q_loss.backward()
            optimizer.step()
            soft_update(*pairs, 0.005)
        return run

    eager = step(target, loss)
    compiled = step(torch.compile(target), torch.compile(loss))
    compared("critics' update", eager, compiled, n)


def fp32_actor_update(n: int) -> None:
    """The FP32 actor's update (its loss through both critics, backward into the actor, Adam) eager
    and with the loss through torch.compile: the QAT actor's brevitas graph breaks rule compiling it
    out (fastpath.py), so this is the most compiling could give an actor update here."""
    actor, log_std = QuantActor(OBS, ACT, PolicyConfig(width=WIDTH, quant=None)), LogStd(OBS, ACT, WIDTH)
    qf = QEnsemble(OBS, ACT, WIDTH)
    params = [*actor.parameters(), *log_std.parameters()]
    optimizer, obs, scale, bias = actor_adam(params, 3e-4), torch.randn(BATCH, OBS), torch.ones(ACT), torch.zeros(ACT)

    def loss():
        pi, log_pi = sample_action(actor(obs), log_std(obs), scale, bias)
        return (0.2 * log_pi - qf(obs, pi).amin(0)).mean()

    def step(loss):
        def run():
            actor_loss = loss()
            optimizer.zero_grad()
            actor_loss.backward(inputs=params)
            optimizer.step()
        return run

    compared("FP32 actor's update", step(loss), step(torch.compile(loss)), n)


def compared(what: str, eager, compiled, n: int) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    compiled()  # inductor compiles its C++ in worker processes: wall time, not this process' CPU time
    compile_s, compile_cpu = time.perf_counter() - wall, time.process_time() - cpu
    e, c = cpu_ms(eager, n), cpu_ms(compiled, n)
    saved = (e - c) / 1e3
    even = f"{compile_s / saved:,.0f} steps" if saved > 0 else "never (no saving)"
    print(f"\n{what}, CPU ms per step: eager {e:.3f}, compiled {c:.3f} (x{e / c:.2f}); first compiled call "
          f"{compile_s:.1f} s ({compile_cpu:.1f} CPU s in this process; cold cache); break-even {even}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=300)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    actor_share(a.iterations)
    critic_update(a.iterations)
    fp32_actor_update(a.iterations)


if __name__ == "__main__":
    main()
