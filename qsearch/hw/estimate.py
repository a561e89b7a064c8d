"""The figures a hardware flow gives for one design: per-layer cycles and resources, and their totals.

The last step of every flow (qsearch/hw/flows.py) returns an `Estimate`; the sweep and the build
folder read nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerEstimate:
    name: str
    op: str
    pe: int | None
    simd: int | None
    cycles: int
    lut: float
    bram18: float
    dsp: float


@dataclass
class Estimate:
    """The estimates for one folding: a throughput target's, or a given folding config's (target NaN)."""

    target_fps: float
    target_cycles: int
    layers: list[LayerEstimate]
    max_cycles: int
    critical_path_cycles: int
    clock_ns: float
    folding: dict = field(default_factory=dict)  # folding config (layer name -> PE, SIMD, ...)
    # what synthesis gives beyond FINN's estimates (None: not known)
    ff: float | None = None
    carry4: int | None = None
    lut_levels: int | None = None  # LUTs on the longest register-to-register path
    arch: str | None = None  # the architecture, e.g. "parallel" or "folded 1x8 1x1 1x1"
    source: str = "FINN estimate"
    note: str = ""  # e.g. the RTL check's line, or why a design was not synthesized
    netlist_check: str | None = None  # the open flow with check_netlist: the netlist simulation's line

    @property
    def lut(self) -> float:
        return sum(l.lut for l in self.layers)

    @property
    def bram18(self) -> float:
        return sum(l.bram18 for l in self.layers)

    @property
    def dsp(self) -> float:
        return sum(l.dsp for l in self.layers)

    @property
    def architecture(self) -> str:
        """arch, or FINN's folding as PE x SIMD per layer."""
        return self.arch or "folded " + " ".join(f"{l.pe}x{l.simd}" for l in self.layers)

    @property
    def throughput(self) -> float:
        """Actions per second: one action per max_cycles (the slowest layer) at the clock."""
        return 1e9 / self.clock_ns / self.max_cycles

    @property
    def latency_ns(self) -> float:
        """FINN's pessimistic latency: the sum of the layers' cycles along the pipeline."""
        return self.critical_path_cycles * self.clock_ns
