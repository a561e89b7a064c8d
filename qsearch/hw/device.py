"""FPGA parts qsearch can check a design against: their resources, and the fit check.

Resources from AMD/Xilinx DS180 (7 Series FPGAs Data Sheet: Overview, table "Artix-7 FPGA Feature
Summary"); the XC7A15T figures are the paper's Table 2. A BRAM36 block counts as two BRAM18, the unit
of FINN's estimates. FINN itself has no table of parts (it reads the family from the name), so a part
not listed here is refused: without its resources nothing can be said about fitting.
"""
from __future__ import annotations

from dataclasses import dataclass

from qsearch.errors import QsearchError


@dataclass(frozen=True)
class Device:
    part: str  # FINN / Vivado part name, e.g. xc7a35tcpg236-1
    lut: int
    ff: int
    bram18: int
    dsp: int

    def fits(self, lut: float, bram18: float, dsp: float, ff: float | None = None) -> bool:
        """True when every known figure is within the device (FF is skipped when unknown)."""
        return (lut <= self.lut and bram18 <= self.bram18 and dsp <= self.dsp
                and (ff is None or ff <= self.ff))

    def over(self, lut: float, bram18: float, dsp: float, ff: float | None = None) -> list[str]:
        """Names of the resources that exceed the device."""
        used = {"LUT": (lut, self.lut), "BRAM18": (bram18, self.bram18), "DSP": (dsp, self.dsp)}
        if ff is not None:
            used["FF"] = (ff, self.ff)
        return [k for k, (u, have) in used.items() if u > have]


# device prefix (part name up to the package) -> (LUT, FF, BRAM18, DSP48E1)
_RESOURCES = {
    "xc7a12t": (8_000, 16_000, 40, 40),
    "xc7a15t": (10_400, 20_800, 50, 45),
    "xc7a25t": (14_600, 29_200, 90, 80),
    "xc7a35t": (20_800, 41_600, 100, 90),
    "xc7a50t": (32_600, 65_200, 150, 120),
    "xc7a75t": (47_200, 94_400, 210, 180),
    "xc7a100t": (63_400, 126_800, 270, 240),
}


def device(part: str) -> Device:
    """The device for a part name such as xc7a15tfgg484-1; unknown parts are a QsearchError."""
    name = part.strip().lower()
    # longest prefix first, so xc7a100t is not read as xc7a10...
    for prefix in sorted(_RESOURCES, key=len, reverse=True):
        rest = name[len(prefix):]
        if name.startswith(prefix) and rest and rest[0].isalpha() and "-" in rest:
            return Device(name, *_RESOURCES[prefix])
    known = ", ".join(sorted(_RESOURCES))
    raise QsearchError(f"unknown FPGA part {part!r}: qsearch knows the resources of {known} "
                       "(give a full part name with package and speed grade, e.g. xc7a35tcpg236-1)")
