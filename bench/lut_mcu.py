"""Logic-circuit (LUT) policies on emulated microcontroller cores: instructions per action, flash and RAM
of their C export (qsearch/deploy/c_lut.py, deploy/c/qpolicy_lut.c), each build first verified on its
core against the NumPy engine (10,000 random observations and the threshold, infinity, NaN and far-out
rows of mcu.verification_observations).

Shapes are Hopper's (11 observations, 3 actions). Tables are random (qsearch.hw.policies.random_actor),
the normalization too: the engine's work does not depend on what the tables hold, only the thermometer's
runs of set bits do, by a few instructions. Prints a table.

    PYTHONPATH=. .venv/bin/python bench/lut_mcu.py [--targets cortex-m4 rv32imc ...]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from qsearch.config import PolicyConfig, QuantBits
from qsearch.deploy import c_export, mcu
from qsearch.hw.policies import random_actor
from qsearch.obs_norm import ObsNorm
from qsearch.quant import lut_integer

OBS, ACT = 11, 3
# name -> thermometer bits, nodes per layer, LUT inputs
SHAPES = {"B16 256-256 k6 (Hopper-like)": (16, (256, 256), 6), "B8 64-64 k4 (small)": (8, (64, 64), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["cortex-m4"], choices=list(mcu.TARGETS))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (bits, luts, k) in SHAPES.items():
            cfg = PolicyConfig(kind="lut", thermometer_bits=bits, luts=luts, lut_inputs=k, mapping="random",
                               quant=QuantBits(bits_out=8))
            rng = np.random.default_rng(0)
            norm = ObsNorm(rng.normal(0, 1, OBS).astype(np.float32), rng.uniform(0.1, 5, OBS).astype(np.float32))
            model = lut_integer.extract(random_actor(cfg, OBS, ACT), norm)
            src = Path(tmp) / f"{len(rows)}"
            src.mkdir()
            size = c_export.write_c(model, np.ones(ACT, np.float32), np.zeros(ACT, np.float32), src)
            checks = mcu.verification_observations(model, 10_000)
            for target in a.targets:
                t = mcu.TARGETS[target]
                core = mcu.Core(t, mcu.build(src, t, src / target))
                started = time.perf_counter()
                mcu.verify(model, core, checks.obs)
                r = mcu.measure(model, t, "packed", src / target, core=core)
                rows.append(f"| {name} | {target} | {r.instructions_per_action:,.0f} | "
                            f"{r.instructions_per_action_int_obs:,.0f} | {r.flash:,} | {size.flash:,} | {r.ram:,} |")
                print(f"  {rows[-1]}  verified on {len(checks.obs):,} observations in "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
    print("\n".join(["LUT policies, one action from a float observation (qpolicy_quantize_obs then qpolicy_run), "
                     "means over 32 random observations; integer observation: qpolicy_run alone.", "",
                     "| policy | target | instructions per action | integer observation | flash (B) | model data (B) "
                     "| RAM (B) |", "|---|---|---|---|---|---|---|", *rows]))


if __name__ == "__main__":
    main()
