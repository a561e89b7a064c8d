"""The two architectures the RTL generator builds, their cycle counts, and the folding chooser.

  parallel  every weight a constant in the logic (zero weights removed); a new observation every
            clock, each result a fixed LATENCY cycles later (valid-only handshake)
  folded    per layer PE x SIMD multipliers reading weights from a ROM, FINN-style: PE output
            channels at a time (PE divides the outputs), SIMD inputs per cycle (SIMD divides the
            inputs); layers hand whole vectors on with valid/ready and work as a dataflow pipeline

Cycle counts are exact, not estimates: the testbench checks them on every simulation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from qsearch.errors import QsearchError
from qsearch.quant.integer import IntegerModel

# The parallel design's threshold search resolves at most this many output bits per pipeline stage:
# an 8-bit output takes two registered stages of 4 comparisons each instead of one chain of 8.
SEARCH_BITS_PER_STAGE = 4


@dataclass(frozen=True)
class Arch:
    kind: str  # "parallel" or "folded"
    folding: tuple[tuple[int, int], ...] = ()  # folded: (PE, SIMD) per layer

    def describe(self) -> str:
        if self.kind == "parallel":
            return "parallel"
        return "folded " + " ".join(f"{pe}x{simd}" for pe, simd in self.folding)


PARALLEL = Arch("parallel")


def folded(folding) -> Arch:
    return Arch("folded", tuple((int(pe), int(simd)) for pe, simd in folding))


def check(model: IntegerModel, arch: Arch) -> Arch:
    """The architecture if it applies to the model; a QsearchError naming the first problem if not."""
    if arch.kind == "parallel":
        return arch
    if arch.kind != "folded":
        raise QsearchError(f"unknown architecture {arch.kind!r}; choose parallel or folded")
    if len(arch.folding) != len(model.layers):
        raise QsearchError(f"the folding gives {len(arch.folding)} (PE, SIMD) pairs for "
                           f"{len(model.layers)} layers")
    for i, ((pe, simd), layer) in enumerate(zip(arch.folding, model.layers)):
        n_out, n_in = layer.weight.shape
        if pe < 1 or n_out % pe:
            raise QsearchError(f"layer {i}: PE {pe} does not divide its {n_out} outputs")
        if simd < 1 or n_in % simd:
            raise QsearchError(f"layer {i}: SIMD {simd} does not divide its {n_in} inputs")
    return arch


def search_stages(out_bits: int) -> int:
    return math.ceil(out_bits / SEARCH_BITS_PER_STAGE)


def layer_cycles(n_out: int, n_in: int, out_bits: int, pe: int, simd: int) -> int:
    """Cycles a folded layer is busy per vector: NF x SF MAC cycles (NF = outputs / PE groups of
    channels, SF = inputs / SIMD steps each), one for the weight ROM's read, the pipelined
    threshold search (two cycles per output bit: ROM read, compare) behind the last group, and one
    to store the result."""
    return (n_out // pe) * (n_in // simd) + 2 * out_bits + 2


def latency(model: IntegerModel, arch: Arch) -> int:
    """Cycles from the clock edge that takes an observation to the one that shows its output valid."""
    if arch.kind == "parallel":
        # input register, then per layer: the accumulator register and the search stages
        return 1 + sum(1 + search_stages(l.out_bits) for l in model.layers)
    # per layer: the busy cycles, plus one to take the vector in and one to hand it on
    return sum(layer_cycles(*l.weight.shape, l.out_bits, pe, simd) + 1
               for l, (pe, simd) in zip(model.layers, arch.folding))


def interval(model: IntegerModel, arch: Arch) -> int:
    """Cycles between observations taken at full rate (output always ready)."""
    if arch.kind == "parallel":
        return 1
    # the slowest layer: busy, then one cycle for its output to be taken, one to take the next input
    return max(layer_cycles(*l.weight.shape, l.out_bits, pe, simd) + 2
               for l, (pe, simd) in zip(model.layers, arch.folding))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def choose(model: IntegerModel, actions_per_s: float, clock_ns: float) -> Arch:
    """The cheapest architecture that reaches a throughput target at the clock.

    Folded when some folding reaches it: per layer the (PE, SIMD) with the fewest multipliers
    (PE x SIMD, then fewer PE: fewer threshold ROMs) whose cycles meet the interval the target
    allows. Otherwise the fully parallel design, which takes an observation every clock; a target
    above one per clock is a QsearchError."""
    per_clock = 1e9 / clock_ns
    if actions_per_s > per_clock * (1 + 1e-9):
        raise QsearchError(f"{actions_per_s:.3g} actions/s is above one per clock at {clock_ns} ns "
                           f"({per_clock:.3g}/s): no architecture here reaches it")
    budget = math.floor(per_clock / actions_per_s + 1e-9)  # cycles allowed per observation
    folding = []
    for layer in model.layers:
        n_out, n_in = layer.weight.shape
        options = [(pe * simd, pe, simd) for pe in _divisors(n_out) for simd in _divisors(n_in)
                   if layer_cycles(n_out, n_in, layer.out_bits, pe, simd) + 2 <= budget]
        if not options:
            return PARALLEL
        folding.append(min(options)[1:])
    return folded(folding)
