"""The architectures the RTL generator builds, their cycle counts, and the choosers.

An MLP's integer model (quant/integer.py) is built one of two ways:
  parallel  every weight a constant in the logic (zero weights removed); a new observation every
            clock, each result a fixed LATENCY cycles later (valid-only handshake)
  folded    per layer PE x SIMD multipliers reading weights from a ROM, FINN-style: PE output
            channels at a time (PE divides the outputs), SIMD inputs per cycle (SIMD divides the
            inputs); layers hand whole vectors on with valid/ready and work as a dataflow pipeline
A logic-circuit (LUT) policy's (quant/lut_integer.py) one way:
  pipelined fully parallel logic (the thermometer's comparators, one LUT per node, each action's
            popcount: counters of six bits and an adder tree, the head's table), registered at its
            input and output, with DEPTH more register ranks between its parts (`lut_parts`), placed
            to even out the LUT levels between registers (`lut_cuts`); valid-only handshake as
            `parallel`

Every design here takes one observation per clock, except folded ones. So a throughput target of T
actions/s at a clock period of c ns is met by any pipeline depth whenever 1e9 / c >= T (else by no
design here: a QsearchError); the depth trades LUT levels between registers (what sets fmax) against
latency (DEPTH + 2 cycles). `choose` takes the shallowest depth whose estimated LUT levels per stage
fit the clock, (c - CLOCK_OVERHEAD_NS) / LUT_LEVEL_NS levels (a rule of thumb for a -1 Artix-7: no
tool here places and routes one, so no timing is closed), and MAX_STAGE_LEVELS (for yosys' sake).
yosys' measured LUT levels are reported beside the estimate and can be more: its mapper (abc9) weighs
cell delays without routing, so it lets stages without carry chains grow as deep as the slowest stage
with them, to save LUTs (lut_generate.py's figures).

Cycle counts are exact, not estimates: the testbench checks them on every simulation.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from qsearch.errors import QsearchError
from qsearch.quant.integer import IntegerModel
from qsearch.quant.lut_integer import IntLUTModel

# The parallel design's threshold search resolves at most this many output bits per pipeline stage:
# an 8-bit output takes two registered stages of 4 comparisons each instead of one chain of 8.
SEARCH_BITS_PER_STAGE = 4
# The LUT design's clock rule (module docstring): a LUT and its route take about a nanosecond on a -1
# Artix-7 (the LUT itself ~0.1 ns, DS181; routing most of the rest), and each register-to-register
# path loses about a nanosecond to clock-to-out, setup and clock uncertainty. Assumed, not measured.
LUT_LEVEL_NS = 1.0
CLOCK_OVERHEAD_NS = 1.0
# ...and however slow the clock, a stage has at most this many: flip-flops are plentiful (twice the LUTs
# on the 7-series), while yosys' LUT mapper (abc9) took 1,889 CPU s on a 10-level stage (16 thermometer
# bits, 256 + 256 6-input tables, 11 features, 3 actions, unpipelined) against 25-33 s at 3-5 levels.
MAX_STAGE_LEVELS = 8
COUNTER_BITS = 6  # the LUT design's popcount counts its bits six at a time first: three LUT6s per six bits


@dataclass(frozen=True)
class Arch:
    kind: str  # "parallel", "folded" or "pipelined"
    folding: tuple[tuple[int, int], ...] = ()  # folded: (PE, SIMD) per layer
    depth: int = 0  # pipelined: register ranks between the input and output registers

    def describe(self) -> str:
        if self.kind == "parallel":
            return "parallel"
        if self.kind == "pipelined":
            return f"pipelined depth {self.depth}"
        return "folded " + " ".join(f"{pe}x{simd}" for pe, simd in self.folding)


PARALLEL = Arch("parallel")


def folded(folding) -> Arch:
    return Arch("folded", tuple((int(pe), int(simd)) for pe, simd in folding))


def pipelined(depth: int) -> Arch:
    return Arch("pipelined", depth=int(depth))


def check(model: IntegerModel | IntLUTModel, arch: Arch) -> Arch:
    """The architecture if it applies to the model; a QsearchError naming the first problem if not."""
    if isinstance(model, IntLUTModel):
        if arch.kind != "pipelined":
            raise QsearchError(f"a logic-circuit (LUT) policy is built pipelined, not {arch.kind}")
        parts = len(lut_parts(model))
        if not 0 <= arch.depth < parts:
            raise QsearchError(f"pipeline depth {arch.depth}: this policy's design has {parts} parts, "
                               f"so 0 to {parts - 1} registers fit between them")
        return arch
    if arch.kind == "pipelined":
        raise QsearchError("the pipelined design is for logic-circuit (LUT) policies; an MLP is built "
                           "parallel or folded")
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


def lut_levels(inputs: int) -> int:
    """LUT levels of any function of `inputs` bits as a tree of LUT6s (each level adds 5 inputs)."""
    return 1 + -(-max(0, inputs - 6) // 5)


def level_bits(model: IntLUTModel) -> int:
    """Bits of a thermometer level (0 to B): the LUT design's input per feature."""
    return len(model.thresholds).bit_length()


def counters(group: int) -> int:
    """The popcount's first-level counters over `group` bits."""
    return -(-group // COUNTER_BITS)


def adder_levels(group: int) -> int:
    """Levels of the balanced tree of two-input adders summing a group's counters."""
    return (counters(group) - 1).bit_length()


def lut_parts(model: IntLUTModel) -> list[tuple[str, int]]:
    """The LUT design's combinational parts in order, with their estimated LUT levels: the
    thermometer's comparators (a level against constants), each LUT layer, the popcount's counters
    (six bits each, a LUT6 per output bit), each level of its adder tree (a LUT and a carry chain
    each), the head's table indexed by the count."""
    parts = [("thermometer", lut_levels(level_bits(model)))]
    parts += [(f"layer{i}", lut_levels(l.connections.shape[1])) for i, l in enumerate(model.layers)]
    parts += [("count", 1)] + [(f"sum{i}", 1) for i in range(adder_levels(model.group))]
    return parts + [("head", lut_levels(model.group.bit_length()))]


def _placement(model: IntLUTModel, depth: int) -> tuple[int, tuple[int, ...]]:
    """(LUT levels of the deepest stage, the parts a register follows) for the placement of `depth`
    registers with the shallowest deepest stage, the earliest such one on ties."""
    levels = [n for _, n in lut_parts(model)]

    @functools.cache
    def best(end: int, stages: int) -> tuple[int, tuple[int, ...]]:
        """Parts [0, end) split into `stages` non-empty stages."""
        if stages == 1:
            return sum(levels[:end]), ()
        return min((max(best(start, stages - 1)[0], sum(levels[start:end])), best(start, stages - 1)[1] + (start - 1,))
                   for start in range(stages - 1, end))

    return best(len(levels), depth + 1)


def lut_cuts(model: IntLUTModel, depth: int) -> tuple[int, ...]:
    """The parts (indices into lut_parts) a pipeline register follows at `depth`."""
    return _placement(model, depth)[1]


def stage_levels(model: IntLUTModel, depth: int) -> int:
    """Estimated LUT levels of the deepest register-to-register stage at `depth`."""
    return _placement(model, depth)[0]


def latency(model: IntegerModel | IntLUTModel, arch: Arch) -> int:
    """Cycles from the clock edge that takes an observation to the one that shows its output valid."""
    if arch.kind == "pipelined":
        return arch.depth + 2  # the input register, DEPTH ranks, the output register
    if arch.kind == "parallel":
        # input register, then per layer: the accumulator register and the search stages
        return 1 + sum(1 + search_stages(l.out_bits) for l in model.layers)
    # per layer: the busy cycles, plus one to take the vector in and one to hand it on
    return sum(layer_cycles(*l.weight.shape, l.out_bits, pe, simd) + 1
               for l, (pe, simd) in zip(model.layers, arch.folding))


def interval(model: IntegerModel, arch: Arch) -> int:
    """Cycles between observations taken at full rate (output always ready)."""
    if arch.kind in ("parallel", "pipelined"):
        return 1
    # the slowest layer: busy, then one cycle for its output to be taken, one to take the next input
    return max(layer_cycles(*l.weight.shape, l.out_bits, pe, simd) + 2
               for l, (pe, simd) in zip(model.layers, arch.folding))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def choose(model: IntegerModel | IntLUTModel, actions_per_s: float, clock_ns: float) -> Arch:
    """The cheapest architecture that reaches a throughput target at the clock.

    An MLP: folded when some folding reaches it: per layer the (PE, SIMD) with the fewest multipliers
    (PE x SIMD, then fewer PE: fewer threshold ROMs) whose cycles meet the interval the target
    allows. Otherwise the fully parallel design, which takes an observation every clock.
    A LUT policy: the shallowest pipeline whose stages fit the clock (module docstring).
    A target above one per clock is a QsearchError."""
    per_clock = 1e9 / clock_ns
    if actions_per_s > per_clock * (1 + 1e-9):
        raise QsearchError(f"{actions_per_s:.3g} actions/s is above one per clock at {clock_ns} ns "
                           f"({per_clock:.3g}/s): no architecture here reaches it")
    if isinstance(model, IntLUTModel):
        return choose_depth(model, clock_ns)
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


def choose_depth(model: IntLUTModel, clock_ns: float) -> Arch:
    """The shallowest pipeline whose estimated LUT levels per stage fit a clock period (module docstring),
    and MAX_STAGE_LEVELS."""
    allowed = min(MAX_STAGE_LEVELS, math.floor((clock_ns - CLOCK_OVERHEAD_NS) / LUT_LEVEL_NS + 1e-9))
    for depth in range(len(lut_parts(model))):
        if stage_levels(model, depth) <= allowed:
            return pipelined(depth)
    raise QsearchError(f"a {clock_ns} ns clock allows ~{allowed} LUT levels per stage; the deepest pipeline "
                       f"of this policy has {stage_levels(model, len(lut_parts(model)) - 1)}")
