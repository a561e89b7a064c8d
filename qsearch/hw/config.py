"""The hardware configuration: every hardware default, documented once, and the device resolved once.

`HwConfig` is what every hardware step (qsearch/hw/finn_steps.py, open_steps.py) is given, in the manner of FINN's
DataflowBuildConfig. It is built once, from `qsearch hw`'s options or a caller's arguments, and refuses
bad values there (a QsearchError), before any work. The one-line docstring under each field is its
documentation: `qsearch hw --help` shows it (qsearch.config.field_doc) next to the field's default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from qsearch.errors import QsearchError
from qsearch.hw.device import Device, device


@dataclass(frozen=True)
class HwConfig:
    """The part, its resources, the clock, the padding and FINN's folding limit, with the throughput
    targets of a sweep; for the folding steps also the one target (or folding config) to fold for."""

    targets: tuple[float, ...] = (1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)
    """throughput targets [actions/s] the sweep folds each policy for; the highest that fits is kept"""
    part: str = "xc7a15tfgg484-1"
    """FPGA part as FINN and Vivado name it, with package and speed grade (paper: XC7A15T)"""
    clock_ns: float = 10.0
    """clock period [ns] (paper: 10 ns, 100 MHz)"""
    pad: int | None = None
    """pad observation and action sizes to a multiple of this; unset: no padding (paper: 32)"""
    mvau_wwidth_max: int = 36
    """widest weight stream [bits] FINN's SetFolding gives a matrix-vector unit (FINN's default: 36)"""
    check_netlist: bool = False
    """open flow: also simulate each synthesized netlist against the integer engine before its counts are reported"""
    target_fps: float | None = None
    """the one target [actions/s] the folding steps fold for, set per sweep task (FINN's target_fps)"""
    folding: dict | None = field(default=None, hash=False)
    """a folding config (layer -> PE, SIMD, ...; a sweep row's, either flow's) applied instead of a target"""
    device: Device = field(init=False, repr=False, compare=False)
    """the part's resources (LUT, FF, BRAM18, DSP), resolved from `part` (qsearch/hw/device.py)"""

    def __post_init__(self):
        object.__setattr__(self, "device", device(self.part))  # unknown parts are refused here
        object.__setattr__(self, "targets", tuple(self.targets))  # hashable: a sweep worker keys its cache by config
        if not self.clock_ns > 0:
            raise QsearchError(f"the clock period must be positive, got {self.clock_ns} ns")
        if not isinstance(self.mvau_wwidth_max, int) or self.mvau_wwidth_max < 1:
            raise QsearchError(f"mvau_wwidth_max must be a positive integer, got {self.mvau_wwidth_max!r}")
        if self.pad is not None and (not isinstance(self.pad, int) or self.pad < 1):
            raise QsearchError(f"--pad must be a positive integer (a multiple, e.g. 32), got {self.pad!r}")
        if not self.targets or any(not t > 0 for t in self.targets):
            raise QsearchError(f"targets must be positive actions per second, got {list(self.targets)}")
        if not isinstance(self.check_netlist, bool):
            raise QsearchError(f"check_netlist must be true or false, got {self.check_netlist!r}")
        if self.target_fps is not None and not self.target_fps > 0:
            raise QsearchError(f"the target must be positive actions per second, got {self.target_fps}")
        if self.target_fps is not None and self.folding is not None:
            raise QsearchError("fold either for a target or by a folding config, not both")

    def for_target(self, target_fps: float) -> HwConfig:
        """This configuration for the folding steps of one throughput target."""
        return dataclasses.replace(self, target_fps=float(target_fps), folding=None)

    def with_folding(self, folding: dict) -> HwConfig:
        """This configuration for the folding steps to apply a given FINN folding config."""
        return dataclasses.replace(self, target_fps=None, folding=folding)

    def record(self) -> dict:
        """The run-wide settings as the reports record them: no per-target field, no resolved device."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("target_fps", "folding", "device")}
