"""Benchmark: the paper's five Table-1 configurations x 7 throughput targets through FINN's estimate flow
as Ray tasks (random weights of those shapes: hardware cost depends on shapes and bit widths only).

Prints the wall time of each phase and each policy's chosen design next to the paper's Table 3
(post-synthesis, FINN v0.10.1, power from XPE); ours are finn-plus 1.6.1 estimates. The report
(CSV, Markdown, figure) goes to hw_builds/bench_paper/.

    .venv/bin/python bench/hw_sweep.py [--pad 32]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# The paper's Table 3: LUT, FF, BRAM36, DSP, latency [us], power [W], actions/s, J per action
PAPER_TABLE3 = {
    "Humanoid": (2300, 3100, 1.5, 45, 15.4, 0.33, 6.5e4, 5.1e-6),
    "Walker2d": (1900, 1600, 2, 4, 162.2, 0.17, 6.2e3, 2.8e-5),
    "Ant": (2700, 4500, 3, 45, 2.3, 0.39, 4.4e5, 8.9e-7),
    "HalfCheetah": (4300, 4600, 15, 11, 243.2, 0.33, 4.1e3, 8.0e-5),
    "Hopper": (2400, 2000, 0, 45, 0.2, 0.31, 1.4e8, 2.3e-9),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pad", type=int, default=None, help="pad observation/action sizes to a multiple (paper: 32)")
    ap.add_argument("--out", default="hw_builds/bench_paper")
    a = ap.parse_args()
    t0 = time.perf_counter()
    from qsearch.hw import hw_report, sweep
    from qsearch.hw.config import HwConfig
    from qsearch.hw.policies import paper_policies

    policies = paper_policies()
    t_build = time.perf_counter()
    cfg = sweep.SweepConfig(HwConfig(pad=a.pad), resource="finn")
    work = sweep.scratch_dir()
    try:
        rows = sweep.run(policies, cfg, work)
    finally:
        sweep.remove(work)
    t_sweep = time.perf_counter()
    chosen = sweep.best(rows)
    hw_report.write(rows, chosen, cfg, Path(a.out))
    t_end = time.perf_counter()

    print(f"{len(policies)} policies x {len(cfg.hw.targets)} targets = {len(rows)} Ray tasks on {os.cpu_count()} cores; "
          f"padding {a.pad or 'off'}; load average at the end {os.getloadavg()[0]:.1f}")
    print(f"wall time: {t_end - t0:.1f} s total = {t_build - t0:.1f} s imports and random policies + "
          f"{t_sweep - t_build:.1f} s sweep (QONNX export on the driver, Ray start, FINN in the workers) + "
          f"{t_end - t_sweep:.1f} s report")
    print()
    head = f"{'policy':28s} {'':6s} {'target':>7s} {'LUT':>7s} {'FF':>6s} {'BRAM36':>6s} {'DSP':>4s} {'latency':>10s} " \
           f"{'P [W]':>6s} {'actions/s':>9s} {'J/action':>8s}"
    print(head)
    print("-" * len(head))
    for (name, _), r in chosen.items():
        env = name.split()[0]
        print(f"{name:28s} {'ours':6s} {r.target_fps:7.0e} {r.lut:7,.0f} {'-':>6s} {r.bram18 / 2:6g} {r.dsp:4g} "
              f"{r.latency_us:8.2f}us {r.power_w_fit:6.2f} {r.actions_per_s:9.1e} {r.energy_j_fit:8.1e}")
        lut, ff, bram, dsp, lat, p, fps, e = PAPER_TABLE3[env]
        flag = " !" if fps > 1e9 / cfg.hw.clock_ns else ""  # more than one action per clock
        print(f"{'':28s} {'paper':6s} {'':7s} {lut:7,} {ff:6,} {bram:6g} {dsp:4g} {lat:8.1f}us {p:6.2f} {fps:9.1e} {e:8.1e}{flag}")
    print("\nours: finn-plus 1.6.1 estimates (no FF), BRAM18 / 2; P and J/action of ours are (fit): the linear fit to "
          "the paper's Table 3 (qsearch/hw/power.py) on FINN's counts; paper: post-synthesis, XPE.")
    print("!: the paper's Hopper throughput (1.4e8 actions/s at 100 MHz) is more than one action per clock; "
          "copied as printed, and its energy per action is derived from it.")
    print(f"report: {a.out}/hw.md, hw.csv, hw.png")


if __name__ == "__main__":
    main()
