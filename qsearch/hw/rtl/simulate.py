"""The generated RTL, or the post-synthesis netlist (with yosys' Xilinx cell models), in verilator
against the integer engine."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsearch.errors import QsearchError
from qsearch.hw.rtl import testbench as tbs
from qsearch.hw.rtl import tools, vectors
from qsearch.hw.rtl.design import Design
from qsearch.quant.integer import IntegerModel
from qsearch.quant.lut_integer import IntLUTModel

RTL = "qpolicy.v"


@dataclass(frozen=True)
class SimResult:
    passed: bool
    checked: int
    errors: int
    timing_errors: int
    latency: int
    line: str


def write_bench(model: IntegerModel | IntLUTModel, d: Design, folder: Path, n: int = 1000, seed: int = 0) -> np.ndarray:
    """The RTL (with its ROM files), the testbench and the vectors into `folder`; returns the input vectors."""
    folder = Path(folder)
    x = vectors.inputs(model, n, seed)
    (folder / RTL).write_text(d.verilog)
    for name, text in d.roms.items():
        (folder / name).write_text(text)
    (folder / f"{tbs.TB}.v").write_text(tbs.testbench(d, n))
    (folder / tbs.IN_HEX).write_text(vectors.hex_lines(x, d.in_bits))
    (folder / tbs.OUT_HEX).write_text(vectors.hex_lines(vectors.expected(model, x), d.out_bits))
    return x


def parse(output: str) -> SimResult:
    m = re.search(r"QPOLICY_TB (PASS|FAIL) checked=(\d+) errors=(\d+) timing_errors=(\d+) latency=(-?\d+)", output)
    if not m:
        raise QsearchError(f"the testbench printed no result: {output.strip()[-300:]}")
    return SimResult(m[1] == "PASS", int(m[2]), int(m[3]), int(m[4]), int(m[5]), m[0])


def run_rtl(folder: Path, design_file: str = RTL, timeout: float = 3600) -> SimResult:
    """The testbench in `folder` against `design_file` (the RTL, or a netlist) in verilator."""
    return parse(tools.verilator_run(folder, [f"{tbs.TB}.v", design_file], tbs.TB, timeout=timeout))


def simulate(model: IntegerModel | IntLUTModel, d: Design, folder: Path, n: int = 1000, seed: int = 0) -> SimResult:
    write_bench(model, d, folder, n, seed)
    return run_rtl(folder)
