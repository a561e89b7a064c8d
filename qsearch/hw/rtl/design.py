"""What both RTL generators (generate.py for networks, lut_generate.py for logic circuits) produce and
share: the design record and the valid-only handshake of a design that takes one observation per clock."""
from __future__ import annotations

from dataclasses import dataclass, field

from qsearch.hw.rtl.arch import Arch

TOP = "qpolicy"


@dataclass(frozen=True)
class Design:
    verilog: str
    top: str
    arch: Arch
    obs_dim: int
    act_dim: int
    in_bits: int
    out_bits: int
    latency: int  # cycles, see arch.latency
    interval: int  # cycles between observations at full rate
    roms: dict = field(default_factory=dict)  # ROM contents the RTL reads with $readmemh: file name -> text

    @property
    def in_width(self) -> int:
        return self.obs_dim * self.in_bits

    @property
    def out_width(self) -> int:
        return self.act_dim * self.out_bits


def valid_only(d: Design) -> str:
    """The valid-only handshake, as a header line says it."""
    return (f"valid-only. in_valid marks an observation on in_data, any clock, no backpressure; out_valid "
            f"marks its output {d.latency} cycles later.")


def valid_only_ports(d: Design) -> list[str]:
    return [f"module {d.top} (", "  input wire clk,", "  input wire rst,", "  input wire in_valid,",
            f"  input wire [{d.in_width - 1}:0] in_data,", "  output wire out_valid,",
            f"  output wire [{d.out_width - 1}:0] out_data", ");"]


def valid_pipeline(latency: int) -> list[str]:
    """out_valid: in_valid delayed by `latency` registers (reset to no output)."""
    shift = "{valid_r[%d:0], in_valid}" % (latency - 2) if latency > 1 else "in_valid"
    return [f"  reg [{latency - 1}:0] valid_r;", f"  always @(posedge clk) valid_r <= rst ? {latency}'b0 : {shift};",
            f"  assign out_valid = valid_r[{latency - 1}];"]
