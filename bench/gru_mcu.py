"""Recurrent (GRU) policies on an emulated Cortex-M4: instructions per multiply-accumulate of a whole
step, from a float observation to the output integers (qpolicy_quantize_obs then qpolicy_step_run:
the input quantization, the GRU's two products, its gates and state update, and the MLP), with the
state carried over consecutive steps from the reset (qsearch.deploy.mcu.measure).

Shapes are Hopper's (11 observations, 3 actions): OBS-GRU H-W-W-ACT is a GRU of H units, then an MLP of
two hidden layers of W and the output layer. MACs per step: 3H x OBS (input product) + 3H x H (state
product) + the MLP's. Weights are random (qsearch.hw.policies.random_actor), the normalization too (as a
trained policy has one); instruction counts depend on the shape and the bits, not on training. Every
build is first verified step by step against the NumPy engine on the emulated core (1,000 random
steps and the special rows, the state carried). Writes bench/results/gru_mcu.{json,md}.

    PYTHONPATH=. .venv/bin/python bench/gru_mcu.py [--targets cortex-m4 ...] [--layouts int8 packed]

The target: at most 6 instructions per MAC on the M4 (the stateless int8 MLP reaches 4.8 on the
paper's Hopper policy).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from qsearch.config import PolicyConfig, QuantBits
from qsearch.deploy import c_export, mcu, stateful
from qsearch.hw.policies import random_actor
from qsearch.obs_norm import ObsNorm
from qsearch.quant import integer

OBS, ACT = 11, 3
# name -> GRU units, MLP width, bits (input, weights, activations and gates, output)
SHAPES = {
    "11-GRU16-16-16-3, 2-bit core": (16, 16, QuantBits(6, 2, 2, 8)),
    "11-GRU64-64-64-3, 8-bit": (64, 64, QuantBits(8, 8, 8, 8)),
    "11-GRU64-64-64-3, 2-bit core": (64, 64, QuantBits(6, 2, 2, 8)),
}
TARGET_PER_MAC = 6.0
RESULTS = Path(__file__).resolve().parent / "results"


def macs(model: integer.IntegerModel) -> int:
    return sum(layer.weight.size for layer in c_export.all_layers(model))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["cortex-m4"], choices=list(mcu.TARGETS))
    ap.add_argument("--layouts", nargs="+", default=["int8"], choices=list(c_export.LAYOUTS))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (units, width, bits) in SHAPES.items():
            cfg = PolicyConfig(width=width, depth=2, encoder="gru", encoder_width=units, quant=bits)
            rng = np.random.default_rng(0)
            norm = ObsNorm(rng.normal(0, 1, OBS).astype(np.float32), rng.uniform(0.1, 5, OBS).astype(np.float32))
            model = integer.extract(random_actor(cfg, OBS, ACT), norm)
            n = macs(model)
            for layout in a.layouts:
                src = Path(tmp) / f"{len(rows)}"
                src.mkdir()
                scale, bias = np.ones(ACT, np.float32), np.zeros(ACT, np.float32)
                c_export.write_c(model, scale, bias, src, layout)
                for target in a.targets:
                    t = mcu.TARGETS[target]
                    core = mcu.Core(t, mcu.build(src, t, src / target))
                    started = time.perf_counter()
                    stateful.verify(model, scale, bias, core, stateful.verification_streams(model, 1000))
                    r = mcu.measure(model, t, layout, src / target, core=core)
                    rows.append({"policy": name, "macs": n, **vars(r), "flash": r.flash, "ram": r.ram,
                                 "per_mac": r.instructions_per_action / n,
                                 "per_mac_int_obs": r.instructions_per_action_int_obs / n})
                    print(f"  {name:<30} {layout:<6} {target:<9} {n:>6,} MACs  {r.instructions_per_action:>9,.0f} "
                          f"instructions per step ({rows[-1]['per_mac']:.2f}/MAC; integer observation "
                          f"{rows[-1]['per_mac_int_obs']:.2f}/MAC)  flash {r.flash:>7,}  RAM {r.ram:>5,}  "
                          f"[verified, {time.perf_counter() - started:.0f} s]", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gru_mcu.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["Recurrent policies, one step from a float observation (qpolicy_quantize_obs then qpolicy_step_run, "
             "the state carried), means over 32 consecutive steps from the reset. Target: at most "
             f"{TARGET_PER_MAC:g} instructions per MAC on the Cortex-M4.", "",
             "| policy | layout | target | MACs | instructions per step | per MAC | per MAC, integer observation | "
             "flash (B) | RAM (B), state included |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['policy']} | {r['layout']} | {r['target']} | {r['macs']:,} | {r['instructions_per_action']:,.0f} | "
              f"{r['per_mac']:.2f} | {r['per_mac_int_obs']:.2f} | {r['flash']:,} | {r['ram']:,} |" for r in rows]
    (RESULTS / "gru_mcu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    m4 = [r["per_mac"] for r in rows if r["target"] == "cortex-m4"]
    if m4:
        print(f"Cortex-M4: at most {max(m4):.2f} instructions per MAC (target {TARGET_PER_MAC:g}: "
              f"{'met' if max(m4) <= TARGET_PER_MAC else 'NOT met'})")


if __name__ == "__main__":
    main()
