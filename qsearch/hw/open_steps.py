"""The open-synthesis flow (no Vivado) as named steps: qsearch's own RTL of the integer model, checked in
verilator against the integer engine, synthesized with yosys for the Xilinx 7-series (qsearch/hw/rtl); with
cfg.check_netlist (`qsearch hw --check-netlist`) the synthesized netlist is simulated against the
integer engine too before its counts are reported.

The flow starts from the policy's integer model (qsearch/quant/integer.py, or a logic-circuit policy's:
qsearch/quant/lut_integer.py), not from its QONNX model: the RTL is generated from the same integers the
integer engine computes with, so the two can be compared bit for bit. The figures are yosys' cell counts BEFORE place-and-route; timing is not closed
(no open tool places and routes a 7-series part): the logic depth in LUT levels is the only timing
signal. Power is not estimated (see qsearch/hw/rtl/yosys.py).
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass

from qsearch.errors import QsearchError
from qsearch.hw.config import HwConfig
from qsearch.hw.estimate import Estimate, LayerEstimate
from qsearch.hw.rtl import arch as arches
from qsearch.hw.rtl.yosys import check_part, synthesize
from qsearch.hw.step_registry import step
from qsearch.quant.integer import IntegerModel
from qsearch.quant.lut_integer import IntLUTModel

SOURCE = "yosys (before place-and-route)"
VECTORS = 1000  # observations each design is simulated with against the integer engine...
SIM_CYCLES = 5_000_000  # ...fewer (at least 50) when they would take more clock cycles than this
# What --check-netlist (cfg.check_netlist) adds per design: verilating the netlist with yosys' Xilinx cell
# models (~6 MB of C++ to compile) and running the same vectors. Measured 2026-12-05 on the padded paper
# Hopper, quiet 2 cores (bench/open_synthesis.py --only Hopper --targets 1e8 [--no-netlist], and the folded
# designs of 1e5 and 1e6 through yosys.synthesize): 13.9-14.0 -> 26.6-30.6 CPU s (parallel), 13.1 -> 31.2
# (1x1 1x1 1x1), 17.1 -> 35.4 (1x8 1x4 1x8). Hence off by default.
NETLIST_COST = "about twice each design's CPU time: +14 to +20 CPU s on the padded paper Hopper's designs, 13-17 s without"
# A fully parallel design holds every non-zero weight as logic: 4.9 LUT each, measured on the padded
# paper Hopper (1,801 LUT, 369 non-zero weights). Beyond twice the part's LUTs it cannot fit, and yosys
# takes tens of minutes on such a design (Humanoid's), so it is reported as not fitting, unsynthesized.
LUT_PER_WEIGHT = 4.9
# A logic-circuit policy's design: 2.2-2.3 LUT per lookup table, comparators and popcounts included, measured
# on a random 11-feature 3-action policy of 16 thermometer bits and 256 + 256 6-input tables (1,109-1,200
# LUT at pipeline depths 0-3; bench/lut_synthesis.py). Beyond twice the part's LUTs: not synthesized.
LUT_PER_NODE = 2.3


@dataclass
class Planned:
    """An integer model and the architecture chosen for it (a per-target step's result)."""

    model: IntegerModel | IntLUTModel
    arch: arches.Arch


def check(cfg: HwConfig) -> None:
    """Refuse, before any work, a configuration the open flow cannot run (a part yosys cannot target)."""
    check_part(cfg.part)


def vectors(model: IntegerModel | IntLUTModel, arch: arches.Arch) -> int:
    """How many observations a design is simulated with: VECTORS, fewer for heavily folded designs."""
    return max(50, min(VECTORS, SIM_CYCLES // arches.interval(model, arch)))


@step()
def step_integer_model(model, cfg: HwConfig):
    """The policy's integer model, as the flow's input (FP32 policies have none)."""
    if not isinstance(model, (IntegerModel, IntLUTModel)):
        raise QsearchError("the open flow needs a policy's integer model: an FP32 policy has no integer hardware")
    return model


@step(per_target=True)
def step_choose_architecture(model: IntegerModel | IntLUTModel, cfg: HwConfig) -> Planned:
    """The cheapest architecture reaching cfg.target_fps (arch.choose), or cfg.folding's: a folding
    config of this flow's rows ({"layer0": {"PE": .., "SIMD": ..}, ...}; empty: fully parallel).
    A logic-circuit policy is never folded: its pipeline depth follows the clock (arch.choose_depth)."""
    if isinstance(model, IntLUTModel) and cfg.folding:
        raise QsearchError("a logic-circuit (LUT) policy has no folding: its design is fully parallel")
    if cfg.target_fps is not None:
        return Planned(model, arches.choose(model, cfg.target_fps, cfg.clock_ns))
    if isinstance(model, IntLUTModel):
        return Planned(model, arches.choose_depth(model, cfg.clock_ns))
    if not cfg.folding:
        return Planned(model, arches.PARALLEL)
    names = [f"layer{i}" for i in range(len(model.layers))]
    if sorted(cfg.folding) != names:
        raise QsearchError(f"the folding config names layers {sorted(cfg.folding)}, the policy has {names}")
    arch = arches.folded([(cfg.folding[n]["PE"], cfg.folding[n]["SIMD"]) for n in names])
    return Planned(model, arches.check(model, arch))  # a PE or SIMD that does not divide its layer: refused


_SYNTHESIZED: dict = {}  # per worker process: targets that choose the same design synthesize it once


@step()
def step_synthesize_and_verify(planned: Planned, cfg: HwConfig) -> Estimate:
    """Generate the RTL, check it in verilator against the integer engine (a mismatch is an error, so
    no figures of an unverified design are reported), synthesize it with yosys and, with cfg.check_netlist,
    check the synthesized netlist the same way (yosys' models of the Xilinx cells); the figures."""
    model, arch = planned.model, planned.arch
    target = float("nan") if cfg.target_fps is None else cfg.target_fps
    folding = {f"layer{i}": {"PE": pe, "SIMD": simd} for i, (pe, simd) in enumerate(arch.folding)}
    too_large = _too_large(model, arch, cfg)
    if too_large:
        return _estimate(model, arch, cfg, target, folding, None, too_large)
    key = (hashlib.sha256(pickle.dumps(model)).hexdigest(), arch, cfg.part, cfg.clock_ns, cfg.check_netlist)
    if key not in _SYNTHESIZED:
        _SYNTHESIZED[key] = synthesize(model, arch, cfg.part, cfg.clock_ns, vectors=vectors(model, arch),
                                       check_netlist=cfg.check_netlist)
    return _estimate(model, arch, cfg, target, folding, _SYNTHESIZED[key], None)


def _too_large(model, arch: arches.Arch, cfg: HwConfig) -> str | None:
    """Why a fully parallel design is not synthesized (far beyond the part), or None."""
    if arch == arches.PARALLEL:
        count, what, lut = sum(int((layer.weight != 0).sum()) for layer in model.layers), "non-zero weights", LUT_PER_WEIGHT
    elif arch.kind == "pipelined":
        count, what, lut = sum(len(layer.tables) for layer in model.layers), "lookup tables", LUT_PER_NODE
    else:
        return None
    if count * lut <= 2 * cfg.device.lut:
        return None
    return f"not synthesized: {count:,} {what} as logic, ~{count * lut:,.0f} LUT"


def _estimate(model, arch, cfg, target, folding, r, skipped: str | None) -> Estimate:
    """The whole design as one entry (yosys flattens it, so there are no per-layer counts)."""
    nan = float("nan")
    whole = LayerEstimate("qpolicy", arch.describe(), None, None, arches.interval(model, arch),
                          nan if r is None else r.lut, nan if r is None else r.bram18, nan if r is None else r.dsp)
    return Estimate(target, 0, [whole], arches.interval(model, arch), arches.latency(model, arch), cfg.clock_ns,
                    folding, ff=None if r is None else r.ff, carry4=None if r is None else r.carry4,
                    lut_levels=None if r is None else r.lut_levels, arch=arch.describe(), source=SOURCE,
                    note=skipped or (r.rtl_check if r else ""),
                    netlist_check=r.netlist_check if r is not None and cfg.check_netlist else None)
