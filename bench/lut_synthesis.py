"""Open synthesis (yosys, no Vivado) of logic-circuit (LUT) policies at several pipeline depths.

  .venv/bin/python bench/lut_synthesis.py [--only paper|small] [--depths 0,1,2,3] [--netlist]

Two random policies (hw/policies.py random_actor: random wiring, truth tables and head), 11 features and
3 actions as Hopper: the paper-sized one (16 thermometer bits, LUT layers 256-256 of 6 inputs) and a
small one (8 bits, 64-64 of 4 inputs). Each design is generated, simulated in verilator against the
integer engine (1,000 vectors) and synthesized with yosys for the XC7A15T (yosys.synthesize); printed:
LUT, FF, CARRY4, the estimated LUT levels per stage (arch.stage_levels) beside yosys' measured ones,
latency in cycles and the tools' CPU seconds. Figures are in qsearch/hw/rtl/lut_generate.py's docstring.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qsearch.config import PolicyConfig, QuantBits  # noqa: E402
from qsearch.hw.policies import random_actor  # noqa: E402
from qsearch.hw.rtl import arch as arches  # noqa: E402
from qsearch.hw.rtl.yosys import synthesize  # noqa: E402
from qsearch.obs_norm import ObsNorm  # noqa: E402
from qsearch.quant import lut_integer  # noqa: E402

SIZES = {"paper": (16, (256, 256), 6), "small": (8, (64, 64), 4)}  # thermometer bits, LUT layers, inputs
OBS, ACT = 11, 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(SIZES), help="one of the two policies")
    ap.add_argument("--depths", default="0,1,2,3", help="pipeline depths, comma-separated (the paper-sized "
                    "policy at depth 0 takes yosys ~30 CPU minutes)")
    ap.add_argument("--netlist", action="store_true", help="also simulate each synthesized netlist")
    args = ap.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    print(f"{'policy':8} {'depth':>5} {'LUT':>6} {'FF':>5} {'CARRY4':>6} {'levels est/yosys':>16} "
          f"{'cycles':>6} {'yosys CPU s':>11} {'verilator CPU s':>15} {'wall s':>7}", flush=True)
    for name, (bits, luts, k) in SIZES.items():
        if args.only not in (None, name):
            continue
        cfg = PolicyConfig(kind="lut", thermometer_bits=bits, luts=luts, lut_inputs=k, mapping="random",
                           quant=QuantBits(bits_out=8))
        model = lut_integer.extract(random_actor(cfg, OBS, ACT), ObsNorm.identity(OBS))
        for depth in depths:
            start = time.perf_counter()
            r = synthesize(model, arches.pipelined(depth), check_netlist=args.netlist)
            cpu = r.tool_cpu_s
            print(f"{name:8} {depth:>5} {r.lut:>6} {r.ff:>5} {r.carry4:>6} "
                  f"{arches.stage_levels(model, depth):>8}/{r.lut_levels:<7} {r.latency_cycles:>6} "
                  f"{cpu['yosys']:>11.1f} {cpu['verilator_rtl'] + cpu.get('verilator_netlist', 0):>15.1f} "
                  f"{time.perf_counter() - start:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
