"""Open synthesis for the Artix-7: yosys' synth_xilinx on the generated RTL, checked bit for bit.

`synthesize(model, arch, part, clock_ns)` is what a hardware flow step calls: it generates the RTL,
simulates it in verilator against the integer engine, synthesizes it with yosys for the 7-series,
simulates the post-synthesis netlist (yosys' own models of the Xilinx cells) with the same
testbench, and returns an OpenSynthResult.

These are yosys' cell counts BEFORE place-and-route, and timing is NOT closed: no open tool places
and routes a 7-series part. The only timing signal is the logic depth of the longest
register-to-register path, in cells and in LUT levels. Power is not estimated: the project's power model
(qsearch/hw/power.py) fits FINN's estimates to the paper's Table 3 with a LUT term of 0, and no
per-LUT/per-FF figure measured on these designs exists, so none is made up here.
(Vivado's synthesis of FINN's designs, `qsearch hw --synth`, is qsearch/hw/vivado.py.)
"""
from __future__ import annotations

import json
import resource
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch.config import default
from qsearch.hw.config import HwConfig
from qsearch.hw.device import Device, device
from qsearch.hw.rtl import simulate as sims
from qsearch.hw.rtl import tools
from qsearch.hw.rtl.arch import Arch
from qsearch.hw.rtl.generate import generate
from qsearch.quant.integer import IntegerModel
from qsearch.quant.lut_integer import IntLUTModel

NETLIST = "netlist.v"
CELLS_SIM = "cells_sim.v"
POWER = "not estimated (no per-LUT/per-FF power figure for these designs; see qsearch/hw/rtl/yosys.py)"
CAVEAT = "yosys synth_xilinx cell counts before place-and-route; timing not closed"


@dataclass(frozen=True)
class OpenSynthResult:
    part: str
    arch: str
    clock_ns: float
    lut: int
    ff: int
    carry4: int
    muxf: int  # MUXF7 + MUXF8
    dsp: int
    bram18: float  # RAMB18 + 2 x RAMB36
    lutram: int  # LUTs used as distributed RAM (RAM32M/RAM64M/RAM*X1*), counted in lut as well
    fits: bool
    over: tuple[str, ...]
    latency_cycles: int
    latency_us: float
    interval_cycles: int
    actions_per_s: float
    logic_levels: int  # cells on the longest register-to-register path
    lut_levels: int  # LUTs on that path
    power: str
    rtl_check: str  # the testbench's line for the RTL
    netlist_check: str  # and for the post-synthesis netlist
    seconds: float  # generate + simulate + synthesize + simulate
    tool_cpu_s: dict  # CPU seconds of the tools per step: verilator (build and run) of the RTL, yosys, netlist
    caveat: str = CAVEAT

    def as_dict(self) -> dict:
        return asdict(self)


# synth_xilinx -family xc7 targets the 7-series: Artix, Kintex, Virtex, Zynq-7000, Spartan-7
XC7_PREFIXES = ("xc7a", "xc7k", "xc7v", "xc7z", "xc7s")


def check_part(part: str) -> Device:
    """The Device for a part yosys can target here (qsearch knows its resources, and it is 7-series)."""
    return check_device(device(part))  # unknown parts: QsearchError


def check_device(dev: Device) -> Device:
    if not dev.part.startswith(XC7_PREFIXES):
        raise QsearchError(f"the open flow synthesizes for the Xilinx 7-series only (yosys synth_xilinx -family xc7); "
                           f"{dev.part} is not one")
    return dev


def synth_script(top: str, dsp: bool = True) -> str:
    return f"""read_verilog {sims.RTL}
synth_xilinx -family xc7 -flatten -noiopad -noclkbuf{"" if dsp else " -nodsp"} -top {top}
tee -q -o stat.json stat -json
write_json netlist.json
write_verilog -noattr {NETLIST}
"""


def _count(cells: dict, *prefixes: str) -> int:
    return sum(n for t, n in cells.items() if t.startswith(prefixes))


def resources(folder: Path) -> dict:
    """Cell counts from yosys' stat -json in `folder`."""
    stat = json.loads((Path(folder) / "stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    # RAM32M/RAM64M occupy 4 LUTs of a slice, RAMxxX1 one per 64 bits: counted as LUTs, as Vivado does
    lutram_luts = 4 * _count(cells, "RAM32M", "RAM64M") + _count(cells, "RAM32X1", "RAM64X1") \
        + 2 * _count(cells, "RAM128X1") + 4 * _count(cells, "RAM256X1")
    return dict(lut=_count(cells, "LUT", "INV") + lutram_luts, ff=_count(cells, "FD"),
                carry4=_count(cells, "CARRY4"), muxf=_count(cells, "MUXF7", "MUXF8"),
                dsp=_count(cells, "DSP48"), bram18=_count(cells, "RAMB18") + 2 * _count(cells, "RAMB36"),
                lutram=lutram_luts)


def logic_depth(folder: Path) -> tuple[int, int]:
    """(cells, LUTs) on the longest register-to-register path of the netlist in `folder`.

    Computed on yosys' JSON netlist: every cell but the flip-flops and RAMs (FD*, RAM*, DSP48E1,
    whose outputs are registered or count as one level) is combinational; a path's length is its
    cells (LUTs, CARRY4, MUXF7/8), its LUT levels the LUTs among them. (yosys' ltp does not cut
    paths at Xilinx flip-flops, so it cannot give this.)"""
    modules = json.loads((Path(folder) / "netlist.json").read_text())["modules"]
    mod = next(m for m in modules.values() if int(m.get("attributes", {}).get("top", "0"), 2))
    cells = mod.get("cells", {})
    driver, comb = {}, {}
    for name, c in cells.items():
        if c["type"].startswith(("FD", "RAM", "DSP48")):
            continue
        dirs = c.get("port_directions", {})
        comb[name] = [b for p, bits in c["connections"].items() if dirs.get(p) == "input" for b in bits
                      if isinstance(b, int)]
        for p, bits in c["connections"].items():
            if dirs.get(p) == "output":
                driver.update({b: name for b in bits if isinstance(b, int)})
    memo: dict[str, tuple[int, int]] = {}
    for root in comb:  # iterative depth-first search: carry chains make paths too deep for recursion
        stack = [root]
        while stack:
            name = stack[-1]
            if name in memo:
                stack.pop()
                continue
            preds = {driver[b] for b in comb[name] if b in driver}
            todo = [p for p in preds if p not in memo]
            if todo:
                stack.extend(todo)
                continue
            best = max((memo[p] for p in preds), default=(0, 0))
            lut = 1 if cells[name]["type"].startswith(("LUT", "INV")) else 0
            memo[name] = (best[0] + 1, best[1] + lut)
            stack.pop()
    return max(memo.values(), default=(0, 0))


def overused(res: dict, dev) -> list[str]:
    """The resources of `res` (from `resources`) the device does not have enough of."""
    return dev.over(res["lut"], res["bram18"], res["dsp"], res["ff"])


def synthesize(model: IntegerModel | IntLUTModel, arch: Arch, part: str = default(HwConfig, "part"),
               clock_ns: float = default(HwConfig, "clock_ns"),
               folder: Path | None = None, vectors: int = 1000, check_netlist: bool = True,
               timeout: float = 3600) -> OpenSynthResult:
    """Generate, check, synthesize and check again one design; its resources and timing.

    `folder` keeps the design files (RTL, testbench, vectors, netlist, logs); without it they go
    to a temporary folder removed afterwards. A mismatch in either simulation is a QsearchError;
    a tool running longer than `timeout` seconds raises subprocess.TimeoutExpired."""
    dev = check_part(part)
    if model is None:
        raise QsearchError("no integer model: open synthesis needs a quantized policy")
    start = time.perf_counter()
    d = generate(model, arch)
    tmp = None
    if folder is None:
        folder = Path(tmp := tempfile.mkdtemp(prefix="qsearch-rtl-"))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        sims.write_bench(model, d, folder, vectors)
        cpu = {}
        t = _tools_cpu()
        rtl = sims.run_rtl(folder, timeout=timeout)
        cpu["verilator_rtl"], t = _tools_cpu() - t, _tools_cpu()
        if not rtl.passed:
            raise QsearchError(f"the generated RTL differs from the integer engine: {rtl.line}")
        # A folded design has PE x SIMD multipliers per layer; yosys puts each into a DSP48E1 when it
        # can. With more multipliers than the part has DSPs, they go into LUTs instead (-nodsp), as
        # the design could not fit otherwise. The fully parallel design has no multipliers.
        mults = sum(pe * simd for pe, simd in arch.folding)
        tools.yosys(folder, synth_script(d.top, dsp=mults <= dev.dsp), timeout=timeout)
        cpu["yosys"], t = _tools_cpu() - t, _tools_cpu()
        res = resources(folder)
        depth, lut_levels = logic_depth(folder)
        net_line = "not run"
        if check_netlist:
            shutil.copyfile(tools.yosys_share() / "xilinx" / CELLS_SIM, folder / CELLS_SIM)
            shutil.rmtree(folder / "obj_dir", ignore_errors=True)
            net = sims.parse(tools.verilator_run(folder, ["qpolicy_tb.v", NETLIST, CELLS_SIM], "qpolicy_tb",
                                                 timeout=timeout))
            if not net.passed:
                raise QsearchError(f"the synthesized netlist differs from the integer engine: {net.line}")
            net_line = net.line
            cpu["verilator_netlist"] = _tools_cpu() - t
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    over = overused(res, dev)
    per_s = 1e9 / (clock_ns * d.interval)
    return OpenSynthResult(
        part=dev.part, arch=arch.describe(), clock_ns=clock_ns, **res, fits=not over, over=tuple(over),
        latency_cycles=d.latency, latency_us=d.latency * clock_ns / 1e3, interval_cycles=d.interval,
        actions_per_s=per_s, logic_levels=depth, lut_levels=lut_levels, power=POWER,
        rtl_check=rtl.line, netlist_check=net_line, seconds=time.perf_counter() - start,
        tool_cpu_s={k: round(v, 2) for k, v in cpu.items()})


def _tools_cpu() -> float:
    """CPU seconds of this process' finished tool runs (children: verilator, the C++ compiler, yosys)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def report(r: OpenSynthResult) -> str:
    """A short plain-text report of one open synthesis."""
    fit = "fits" if r.fits else f"does NOT fit ({', '.join(r.over)} over)"
    return "\n".join([
        f"open synthesis ({r.caveat}) for {r.part}, {r.arch}, clock {r.clock_ns} ns:",
        f"  LUT {r.lut} (of which LUTRAM {r.lutram}), FF {r.ff}, CARRY4 {r.carry4}, MUXF7/8 {r.muxf}, "
        f"DSP48E1 {r.dsp}, BRAM18 {r.bram18:g}: {fit}",
        f"  latency {r.latency_cycles} cycles = {r.latency_us:.3g} us, a new observation every "
        f"{r.interval_cycles} cycle(s) = {r.actions_per_s:.3g} actions/s",
        f"  longest register-to-register path: {r.logic_levels} cells, {r.lut_levels} LUT levels "
        "(the only timing signal without place-and-route)",
        f"  power: {r.power}",
        f"  RTL vs integer engine: {r.rtl_check}",
        f"  netlist vs integer engine: {r.netlist_check}",
    ])
