"""The exported C on microcontroller instruction sets: cross-built with zig's clang, run on unicorn's
emulated cores, checked against the NumPy engine and measured (flash, RAM, instructions per action).

No board and no system toolchain: the `ziglang` package is a clang cross compiler with its own
runtime pieces (software float for cores without an FPU), `unicorn` emulates Cortex-M and RV32, and
pyelftools reads the built image. They are the optional extra `qsearch[mcu]` (`make install` has it).

A build is three files in a folder: qpolicy.o (the engine and model, compiled as firmware would),
harness.o (deploy/c/mcu_harness.c) and emulator.elf (both, linked at the target's addresses). The
emulator calls the engine's functions directly, returning to `mcu_halt`, and counts instructions
with a code hook: per action from a float observation (`qpolicy_quantize_obs` then `qpolicy_run`, one
call, as a control loop makes it: the headline, since on cores without an FPU the quantization can
cost more than the network) and from an integer observation (`qpolicy_run` alone). Latency is an estimate,
instructions / clock: it ignores flash wait states, pipeline stalls and multi-cycle instructions
(loads, taken branches, multiplies on small cores).

A recurrent policy's build is measured over consecutive steps from the reset, the state carried in
the core's memory (`mcu_step_from_float`, then `qpolicy_step_run` from the same state), its RAM
including the state the caller keeps; it is checked step by step by qsearch/deploy/stateful.py.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qsearch.deploy.c_export import TEMPLATES, compile_harness
from qsearch.errors import QsearchError
from qsearch.quant.layers import int_range
from qsearch.quant.integer import IntegerModel
from qsearch.quant.lut_integer import IntLUTModel

INSTALL_HINT = "pip install -e '.[mcu]' in the qsearch checkout (make install does it)"
MCU_HARNESS = TEMPLATES / "mcu_harness.c"
# The engine builds as strict C99 with warnings as errors, as on the host (c_export.CFLAGS); -g only
# adds debug sections (not loaded, not counted), which map an instruction count back to source lines.
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-g", "-ffreestanding",
          "-ffunction-sections", "-fdata-sections", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables")
STACK_BYTES = 64 * 1024
IO_BYTES = 4 * 1024 * 1024  # observations in, rows out: a region the emulator maps beside the image
BATCH_ROWS = 2048
STATE_BYTES = 64 * 1024  # the bottom of the I/O region holds a recurrent policy's state
STACK_FILL = 0xA5
LUT_TABLES = "bit-packed truth tables"  # a LUT policy's report names this instead of a weight layout


@dataclass(frozen=True)
class Target:
    name: str
    arch: str  # "arm" (Thumb, M-profile) or "riscv"
    zig_flags: tuple[str, ...]
    cpu: str  # unicorn CPU model constant
    fpu: bool
    mhz: float  # default clock for the latency estimate
    flash_base: int
    ram_base: int
    io_base: int


# The FPU goes in -mcpu as a zig feature: with clang's -mfpu/-mfloat-abi, zig's clang builds software
# float (calls to __aeabi_fdiv ...) without a word.
TARGETS = {
    "cortex-m0": Target("cortex-m0", "arm", ("-target", "thumb-freestanding-eabi", "-mcpu=cortex_m0"),
                        "UC_CPU_ARM_CORTEX_M0", False, 48, 0x08000000, 0x20000000, 0x60000000),
    "cortex-m4": Target("cortex-m4", "arm", ("-target", "thumb-freestanding-eabihf", "-mcpu=cortex_m4+vfp4d16sp"),
                        "UC_CPU_ARM_CORTEX_M4", True, 240, 0x08000000, 0x20000000, 0x60000000),
    "cortex-m7": Target("cortex-m7", "arm", ("-target", "thumb-freestanding-eabihf", "-mcpu=cortex_m7+fp_armv8d16sp"),
                        "UC_CPU_ARM_CORTEX_M7", True, 240, 0x08000000, 0x20000000, 0x60000000),
    # the ESP32-C3/C6 class of core; unicorn has no Xtensa (ESP32-S3)
    "rv32imc": Target("rv32imc", "riscv", ("-target", "riscv32-freestanding-none", "-mcpu=generic_rv32+m+c"),
                      "UC_CPU_RISCV32_ANY", False, 160, 0x42000000, 0x3FC80000, 0x50000000),
}
ALL_TARGETS = ("host", *TARGETS)


def target(name: str) -> Target | None:
    """The named microcontroller target, None for the host; an unknown name is a user error."""
    if name not in ALL_TARGETS:
        raise QsearchError(f"unknown target {name!r}; choose one of {', '.join(ALL_TARGETS)}")
    return TARGETS.get(name)


def require_tools() -> None:
    missing = [m for m in ("ziglang", "unicorn", "elftools") if importlib.util.find_spec(m) is None]
    if missing:
        raise QsearchError(f"the microcontroller targets need {', '.join(missing)}: {INSTALL_HINT}")


# ---- building ----

def _zig_cc(t: Target, args: list[str], cwd: Path) -> None:
    cmd = [sys.executable, "-m", "ziglang", "cc", *t.zig_flags, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError(f"zig cc failed for {t.name}: {' '.join(cmd)}\n{p.stderr}")


def _linker_script(t: Target) -> str:
    # KEEP: every function of the engine and the harness stays, whatever calls it.
    # .data would be copied from flash by a startup routine; the engine has none, but it is counted.
    return f"""ENTRY(mcu_halt)
MEMORY {{
  FLASH (rx) : ORIGIN = {t.flash_base:#x}, LENGTH = 8M
  RAM (rwx) : ORIGIN = {t.ram_base:#x}, LENGTH = 256K
}}
SECTIONS {{
  .text : {{ KEEP(*qpolicy.o(.text*)) KEEP(*harness.o(.text*)) *(.text*) }} > FLASH
  .rodata : {{ *(.rodata*) *(.srodata*) }} > FLASH
  .data : {{ *(.data*) *(.sdata*) }} > RAM AT > FLASH
  .bss : {{ *(.bss*) *(.sbss*) *(COMMON) }} > RAM
}}
"""


def build(src: Path, t: Target, out: Path) -> Path:
    """Cross-compile the exported sources in `src` into `out` (made if missing); returns emulator.elf."""
    require_tools()
    out.mkdir(parents=True, exist_ok=True)
    (out / "link.ld").write_text(_linker_script(t))
    inc = f"-I{Path(src).resolve()}"
    _zig_cc(t, [*CFLAGS, inc, "-c", str(Path(src).resolve() / "qpolicy.c"), "-o", "qpolicy.o"], out)
    _zig_cc(t, [*CFLAGS, inc, "-c", str(MCU_HARNESS), "-o", "harness.o"], out)
    # zig links its whole runtime as one object: --gc-sections keeps what the engine and harness use
    _zig_cc(t, ["-Wl,-T,link.ld", "-Wl,--gc-sections", "qpolicy.o", "harness.o", "-o", "emulator.elf"], out)
    return out / "emulator.elf"


# ---- sizes from the built files ----

def _section_sizes(path: Path) -> dict:
    """Bytes of code, constants and static RAM in an ELF file's allocated sections."""
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    sizes = dict(code=0, const=0, data=0, bss=0)
    with open(path, "rb") as f:
        for s in ELFFile(f).iter_sections():
            flags = s["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC:
                continue
            if flags & SH_FLAGS.SHF_EXECINSTR:
                sizes["code"] += s["sh_size"]
            elif flags & SH_FLAGS.SHF_WRITE:
                sizes["bss" if s["sh_type"] == "SHT_NOBITS" else "data"] += s["sh_size"]
            else:
                sizes["const"] += s["sh_size"]
    return sizes


def _functions(path: Path) -> dict[str, int]:
    """The functions an ELF file defines, and their sizes."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name: s["st_size"] for s in symtab.iter_symbols()
                if s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] != "SHN_UNDEF"}


def _symbols(path: Path) -> dict[str, int]:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        return {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols() if s.name}


# ---- the emulated core ----

class Core:
    """An emulated core with emulator.elf loaded; `call` runs one function of it to its return."""

    def __init__(self, t: Target, elf: Path):
        import unicorn
        from elftools.elf.elffile import ELFFile

        self.t = t
        if t.arch == "arm":
            from unicorn import arm_const as c
            self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
            self.uc.ctl_set_cpu_model(getattr(c, t.cpu))
            self.args = [c.UC_ARM_REG_R0, c.UC_ARM_REG_R1, c.UC_ARM_REG_R2, c.UC_ARM_REG_R3]
            self.sp, self.ra = c.UC_ARM_REG_SP, c.UC_ARM_REG_LR
            self.pc = c.UC_ARM_REG_PC
        else:
            from unicorn import riscv_const as c
            self.uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV32)
            self.uc.ctl_set_cpu_model(getattr(c, t.cpu))
            self.args = [c.UC_RISCV_REG_A0, c.UC_RISCV_REG_A1, c.UC_RISCV_REG_A2, c.UC_RISCV_REG_A3]
            self.sp, self.ra, self.pc = c.UC_RISCV_REG_SP, c.UC_RISCV_REG_RA, c.UC_RISCV_REG_PC
        self.uc.mem_map(t.flash_base, 8 << 20)
        self.uc.mem_map(t.ram_base, 256 << 10)
        self.uc.mem_map(t.io_base, IO_BYTES)
        with open(elf, "rb") as f:
            for seg in ELFFile(f).iter_segments():
                if seg["p_type"] == "PT_LOAD":
                    # at its run address: what the startup code's copy of .data would give
                    data = seg.data() + bytes(seg["p_memsz"] - seg["p_filesz"])
                    self.uc.mem_write(seg["p_vaddr"], data)
        self.symbols = _symbols(elf)
        self.stack_top = t.ram_base + (256 << 10)
        self.stack_bottom = self.stack_top - STACK_BYTES
        self.thumb = 1 if t.arch == "arm" else 0

    def call(self, name: str, *args: int, count: bool = False) -> int:
        """Run `name(*args)` until it returns; with `count`, the number of instructions it executed."""
        from unicorn import UC_HOOK_CODE

        halt = self.symbols["mcu_halt"] & ~1
        for reg, value in zip(self.args, args):
            self.uc.reg_write(reg, value)
        self.uc.reg_write(self.sp, self.stack_top)
        self.uc.reg_write(self.ra, halt | self.thumb)
        executed = [0]
        hook = None
        if count:
            def on_code(uc, address, size, user):
                executed[0] += 1
            hook = self.uc.hook_add(UC_HOOK_CODE, on_code)
            self.uc.ctl_flush_tb()  # blocks translated before the hook existed would not call it
        try:
            self.uc.emu_start((self.symbols[name] & ~1) | self.thumb, halt, timeout=600 * 1_000_000)
        finally:
            if hook is not None:
                self.uc.hook_del(hook)
                self.uc.ctl_flush_tb()  # and without the hook again: full speed for the next calls
        if self.uc.reg_read(self.pc) & ~1 != halt:
            raise RuntimeError(f"{name} did not return on the emulated {self.t.name}")
        return executed[0]

    def stack_used(self, name: str, *args: int) -> int:
        """Stack high-water mark of one call: the stack is painted, the call run, the paint read back."""
        self.uc.mem_write(self.stack_bottom, bytes([STACK_FILL]) * STACK_BYTES)
        self.call(name, *args)
        painted = np.frombuffer(bytes(self.uc.mem_read(self.stack_bottom, STACK_BYTES)), np.uint8)
        touched = np.flatnonzero(painted != STACK_FILL)
        return 0 if touched.size == 0 else STACK_BYTES - int(touched[0])

    def batch(self, model: IntegerModel, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """mcu_batch over float observations: x, o and a_q15 per row, as the host harness gives them."""
        d, a = model.obs_dim, model.act_dim
        row = d + 3 * a
        obs = np.ascontiguousarray(obs, np.float32)
        rows = []
        out_at = self.t.io_base + IO_BYTES // 2  # inputs below, rows above
        per_call = max(1, min(BATCH_ROWS, IO_BYTES // 2 // (4 * d)))
        for start in range(0, len(obs), per_call):
            chunk = obs[start:start + per_call]
            self.uc.mem_write(self.t.io_base, chunk.tobytes())
            self.call("mcu_batch", self.t.io_base, len(chunk), out_at)
            rows.append(np.frombuffer(bytes(self.uc.mem_read(out_at, len(chunk) * row)), np.uint8))
        raw = np.concatenate(rows).reshape(len(obs), row)
        return raw[:, :d].view(np.int8), raw[:, d:d + a].view(np.int8), raw[:, d + a:].copy().view(np.int16)

    def steps(self, rows: np.ndarray, row_bytes: int) -> np.ndarray:
        """mcu_steps over rows of (episode-start flag, observation), float32: step_row.h's bytes per row,
        (len(rows), row_bytes). The state lives in the mapped region, so it carries across calls."""
        rows = np.ascontiguousarray(rows, np.float32)
        state_at, in_at, out_at = self.t.io_base, self.t.io_base + STATE_BYTES, self.t.io_base + IO_BYTES // 2
        self.uc.mem_write(state_at, bytes(STATE_BYTES))
        per_call = max(1, min(BATCH_ROWS, (IO_BYTES // 2 - STATE_BYTES) // rows[0].nbytes, IO_BYTES // 2 // row_bytes))
        out = []
        for start in range(0, len(rows), per_call):
            chunk = rows[start:start + per_call]
            self.uc.mem_write(in_at, chunk.tobytes())
            self.call("mcu_steps", state_at, in_at, len(chunk), out_at)
            out.append(np.frombuffer(bytes(self.uc.mem_read(out_at, len(chunk) * row_bytes)), np.uint8))
        return np.concatenate(out).reshape(len(rows), row_bytes)

    def returned(self, name: str, *args: int) -> int:
        """What `name(*args)` returns (a 32-bit value)."""
        self.call(name, *args)
        return self.uc.reg_read(self.args[0])


# ---- what a firmware engineer needs to know ----

@dataclass(frozen=True)
class McuReport:
    target: str
    layout: str
    engine_code: int  # bytes of the engine's machine code (qpolicy.o)
    model_const: int  # bytes of constants (weights, thresholds, tables, floats) in qpolicy.o
    runtime_code: int  # bytes of runtime helpers linked in for the engine (software float etc.)
    static_ram: int  # .data + .bss of the engine
    stack: int  # measured high-water mark of the deepest API call, bytes
    # the headline, what a control loop pays: float observation in (qpolicy_quantize_obs then qpolicy_run,
    # counted as one call, mcu_harness.c's mcu_action_from_float), mean over the measured observations
    instructions_per_action: float
    instructions_per_action_max: int
    # integer observation in (sensors that deliver integers): qpolicy_run alone, on the same observations
    instructions_per_action_int_obs: float
    instructions_per_action_int_obs_max: int
    observations: int  # how many observations the means are over
    mhz: float
    # a recurrent policy's: qpolicy_state's bytes, which the caller keeps between steps; the counts are
    # then per step (mcu_step_from_float; qpolicy_step_run), over consecutive steps from the reset
    state: int = 0
    recurrent: bool = False

    @property
    def flash(self) -> int:
        return self.engine_code + self.model_const + self.runtime_code + self.static_ram

    @property
    def ram(self) -> int:
        return self.static_ram + self.stack + self.state

    @property
    def latency_us(self) -> float:
        """Per action from a float observation (the headline), estimated at one instruction per cycle."""
        return self.instructions_per_action / self.mhz

    @property
    def latency_us_int_obs(self) -> float:
        return self.instructions_per_action_int_obs / self.mhz

    def describe(self) -> list[str]:
        run = "qpolicy_step_run" if self.recurrent else "qpolicy_run"
        ram = (f"RAM {self.ram} bytes (stack high-water mark {self.stack}, state {self.state}, static {self.static_ram})"
               if self.recurrent else f"RAM {self.ram} bytes (stack high-water mark {self.stack}, static {self.static_ram})")
        over = (f"{self.observations} consecutive steps from the reset, the state carried" if self.recurrent
                else f"{self.observations} observations")
        layout = self.layout if self.layout == LUT_TABLES else f"{self.layout} weights"
        return [
            f"{self.target} ({layout}): flash {self.flash} bytes (engine code {self.engine_code}, "
            f"model constants {self.model_const}, runtime helpers {self.runtime_code}, data {self.static_ram}); {ram}",
            f"{self.target}: {self.instructions_per_action:,.0f} instructions per action from a float observation "
            f"(qpolicy_quantize_obs then {run}; max {self.instructions_per_action_max:,}), about "
            f"{self.latency_us:.1f} us at {self.mhz:g} MHz",
            f"{self.target}: {self.instructions_per_action_int_obs:,.0f} instructions per action from an integer "
            f"observation ({run} alone; max {self.instructions_per_action_int_obs_max:,}), about "
            f"{self.latency_us_int_obs:.1f} us; means over {over}, latency estimated at "
            "one instruction per cycle (ignores flash wait states, pipeline stalls and multi-cycle instructions)",
        ]


def random_observations(model: IntegerModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw float32 observations, normally distributed around the normalization's mean (1.5 of its
    standard deviations): the typical inputs of a control loop."""
    norm = rng.normal(0, 1.5, (n, model.obs_dim)).astype(np.float32)
    return (norm * model.obs_norm.std.astype(np.float32) + model.obs_norm.mean.astype(np.float32)).astype(np.float32)


def measure(model: IntegerModel, t: Target, layout: str, build_dir: Path, mhz: float | None = None,
            core: Core | None = None, n_obs: int = 32, seed: int = 0) -> McuReport:
    """Sizes from the built files, stack and instruction counts from the emulated core: per action from
    each of `n_obs` random float observations, and from its integer observation. A recurrent model's
    are `n_obs` consecutive steps of a random stream from the reset, the state carried."""
    obj, elf = build_dir / "qpolicy.o", build_dir / "emulator.elf"
    core = core or Core(t, elf)
    own = _section_sizes(obj)
    engine_functions = set(_functions(obj)) | set(_functions(build_dir / "harness.o"))
    runtime = sum(size for name, size in _functions(elf).items() if name not in engine_functions)
    count = _count_steps if model.recurrent else _count_actions
    from_float, from_int, stack, state = count(model, core, n_obs, np.random.default_rng(seed))
    extra = {"state": state, "recurrent": True} if model.recurrent else {}
    if isinstance(model, IntLUTModel):
        layout = LUT_TABLES  # its truth tables are bits whatever layout was asked for
    return McuReport(t.name, layout, own["code"], own["const"], runtime, own["data"] + own["bss"], stack,
                     float(np.mean(from_float)), int(max(from_float)), float(np.mean(from_int)), int(max(from_int)),
                     n_obs, float(mhz or t.mhz), **extra)


def _count_actions(model: IntegerModel, core: Core, n_obs: int, rng: np.random.Generator):
    t = core.t
    x_at, o_at, obs_at = t.io_base, t.io_base + 4096, t.io_base + 8192
    from_float, from_int = [], []
    for obs in random_observations(model, n_obs, rng):
        core.uc.mem_write(obs_at, obs.tobytes())
        from_float.append(core.call("mcu_action_from_float", obs_at, x_at, o_at, count=True))
        # the integer observation it gave, still at x_at: the network alone on the same input
        from_int.append(core.call("qpolicy_run", x_at, o_at, count=True))
    stack = max(core.stack_used("qpolicy_quantize_obs", obs_at, x_at), core.stack_used("qpolicy_act_q15", x_at, o_at),
                core.stack_used("qpolicy_action_float", o_at, obs_at))
    return from_float, from_int, stack, 0


def _count_steps(model: IntegerModel, core: Core, n_obs: int, rng: np.random.Generator):
    """Each step twice from the same state: from the float observation, then from the integer one it
    gave (the state put back in between), so both counts see the same gates."""
    from qsearch.deploy.stateful import stream_observations

    t = core.t
    x_at, o_at, obs_at, act_at, state_at = (t.io_base + k * 4096 for k in range(5))
    state_bytes = core.returned("mcu_state_bytes")
    core.call("qpolicy_reset", state_at)
    from_float, from_int = [], []
    for obs in stream_observations(model, n_obs, rng):
        core.uc.mem_write(obs_at, obs.tobytes())
        before = bytes(core.uc.mem_read(state_at, state_bytes))
        from_float.append(core.call("mcu_step_from_float", state_at, obs_at, x_at, o_at, count=True))
        core.uc.mem_write(state_at, before)
        from_int.append(core.call("qpolicy_step_run", state_at, x_at, o_at, count=True))
    stack = max(core.stack_used("qpolicy_step", state_at, obs_at, act_at),
                core.stack_used("qpolicy_step_q15", state_at, x_at, o_at),
                core.stack_used("qpolicy_reset", state_at))
    return from_float, from_int, stack, state_bytes


# ---- verification against the NumPy engine ----

@dataclass(frozen=True)
class Checks:
    """What a verification runs: `random` random observations, then special rows of each kind in
    `special` (name -> rows); `exact_ties` counts the entries that land exactly on a rounding tie (a
    LUT policy's: exactly on a thermometer threshold)."""

    obs: np.ndarray
    random: int
    special: dict[str, int]
    exact_ties: int

    def describe(self) -> str:
        s = self.special
        edges = (f"{s['ties']} rows of rounding ties ({self.exact_ties} entries exactly on a tie), "
                 f"{s['next to ties']} rows next to them" if "ties" in s else
                 f"{s['thresholds']} rows on thermometer thresholds ({self.exact_ties} entries exactly on one), "
                 f"{s['next to thresholds']} rows one float32 step either side")
        return (f"{self.random:,} random observation{'s' * (self.random != 1)} and {sum(s.values()):,} special "
                f"ones: {edges}, {s['+inf']} rows with +inf, {s['-inf']} with -inf, "
                f"{s['NaN']} with NaN, {s['far out of range']} far out of range")


def verification_observations(model: IntegerModel | IntLUTModel, n: int = 10_000, seed: int = 0) -> Checks:
    """`n` random raw float32 observations, then the special rows, the same whatever `n`: every
    rounding tie of the input quantizer (y = k + 1/2, both parities, both ends of the range), exactly
    where a float32 observation reaches it, and the float32 neighbours on both sides; +inf, -inf and
    NaN, in each position alone and in every position at once; values far out of range, up to the
    largest float32, of both signs. A LUT policy's edges are its thermometer thresholds instead
    (_threshold_rows)."""
    if isinstance(model, IntLUTModel):
        return _threshold_rows(model, n, seed)
    d, q = model.obs_dim, np.float32(model.input_scale)
    mean, std = model.obs_norm.mean.astype(np.float32), model.obs_norm.std.astype(np.float32)
    random = random_observations(model, n, np.random.default_rng(seed))
    lo, hi = int_range(model.input_bits, True)
    # every tie from lo - 1/2 to hi + 1/2
    tie_y = np.arange(lo - 1, hi + 1, dtype=np.float32) + np.float32(0.5)
    ties = _reach(_cycled(tie_y, d), mean, std, q)
    near = np.concatenate([np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf))])
    # beyond the clipping range by 4x, 1e3x, 1e6x (normalized)
    special = {"ties": ties, "next to ties": near, **_extreme_rows(model, seed, np.float32((hi + 1) * q))}
    y = model.obs_norm(ties) / model.input_scale  # as IntegerModel.quantize_obs computes it
    exact = int(np.count_nonzero(y - np.floor(y) == np.float32(0.5)))
    obs = np.concatenate([random, *special.values()]).astype(np.float32)
    return Checks(obs, n, {k: len(v) for k, v in special.items()}, exact)


def _threshold_rows(model: IntLUTModel, n: int, seed: int) -> Checks:
    """A LUT policy's verification_observations: the random ones, then every thermometer threshold
    exactly where a float32 observation's normalized value (obs - mean) / std reaches it, the rows
    whose normalized values are the thresholds' float32 neighbours below and above (the last level
    step not taken, and taken), and the rows of infinities, NaN and far-out values."""
    d, t, one = model.obs_dim, model.thresholds.astype(np.float32), np.float32(1)
    mean, std = model.obs_norm.mean.astype(np.float32), model.obs_norm.std.astype(np.float32)
    random = random_observations(model, n, np.random.default_rng(seed))
    on = _reach(_cycled(t, d), mean, std, one)
    near = np.concatenate([_reach(_cycled(np.nextafter(t, np.float32(side)), d), mean, std, one)
                           for side in (-np.inf, np.inf)])
    # beyond the outermost threshold by 4x, 1e3x, 1e6x
    span = max(np.float32(np.abs(t).max()), one)
    special = {"thresholds": on, "next to thresholds": near, **_extreme_rows(model, seed, span)}
    exact = int(np.count_nonzero(model.obs_norm(on) == _cycled(t, d)))
    obs = np.concatenate([random, *special.values()]).astype(np.float32)
    return Checks(obs, n, {k: len(v) for k, v in special.items()}, exact)


def _cycled(values: np.ndarray, d: int) -> np.ndarray:
    """Rows of `d` columns in which row r holds values[(r + c) mod count] in column c: every value in
    every column."""
    return values[(np.arange(len(values))[:, None] + np.arange(d)[None, :]) % len(values)]


def _extreme_rows(model, seed: int, span: np.float32) -> dict[str, np.ndarray]:
    """+inf, -inf and NaN rows (in each position alone, then in all), and rows far out of range: `span`
    (normalized) times 4, 1e3, 1e6, then raw 1e30 and the largest float32, with alternating signs and
    their negation."""
    d = model.obs_dim
    mean, std = model.obs_norm.mean.astype(np.float32), model.obs_norm.std.astype(np.float32)
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the special rows do not depend on n
    rows = {}
    for name, value in (("+inf", np.inf), ("-inf", -np.inf), ("NaN", np.nan)):
        rows[name] = random_observations(model, d + 1, rng)
        rows[name][np.arange(d), np.arange(d)] = value  # one position at a time
        rows[name][d] = value  # and all of them
    signs = np.where(np.arange(d) % 2 == 0, 1, -1).astype(np.float32)
    far = [(signs * span * np.float32(k)) * std + mean for k in (4, 1e3, 1e6)]
    far += [signs * np.float32(1e30), signs * np.finfo(np.float32).max]
    far = np.asarray(far, np.float32)
    rows["far out of range"] = np.concatenate([far, -far])
    return rows


def _reach(y: np.ndarray, mean: np.ndarray, std: np.ndarray, q: np.float32, ulps: int = 16) -> np.ndarray:
    """Raw float32 observations whose quantizer input ((obs - mean) / std) / q, in float32, is exactly
    `y` where one within `ulps` float32 steps of the ideal value gives it, else the ideal value."""
    ideal = ((y * q) * std + mean).astype(np.float32)
    best = ideal.copy()
    found = np.zeros(y.shape, bool)
    up = down = ideal
    for _ in range(ulps + 1):
        for cand in (up, down):
            hit = ~found & (((cand - mean) / std) / q == y)
            best[hit], found[hit] = cand[hit], True
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
    return best


def compare(model: IntegerModel, obs: np.ndarray, x_c, o_c, a_c, where: str) -> None:
    """One line naming the first observation whose integers differ from the NumPy engine's."""
    with np.errstate(over="ignore"):  # the largest float32 values overflow to infinity, which saturates
        x = model.quantize_obs(obs)
    o = model.run_int(x)[-1]
    out_min = int_range(model.out_bits, True)[0] if isinstance(model, IntLUTModel) else model.layers[-1].out_min
    a = model.tanh_lut[o - out_min]
    bad = np.flatnonzero(np.any(x_c != x, 1) | np.any(o_c != o, 1) | np.any(a_c != a, 1))
    if bad.size:
        i = int(bad[0])
        raise QsearchError(f"{where} differs from the NumPy engine on {bad.size} of {len(obs)} observations; first "
                           f"observation {i} {obs[i].tolist()}: C gives x {x_c[i].tolist()} o {o_c[i].tolist()}, "
                           f"NumPy x {x[i].tolist()} o {o[i].tolist()}")


def verify_host(model: IntegerModel, src: Path, work: Path, obs: np.ndarray) -> None:
    exe = compile_harness(src, work / "harness")
    p = subprocess.run([str(exe), "float"], input=np.ascontiguousarray(obs, np.float32).tobytes(),
                       capture_output=True, check=True)
    d, a = model.obs_dim, model.act_dim
    raw = np.frombuffer(p.stdout, np.uint8).reshape(len(obs), d + 3 * a)
    compare(model, obs, raw[:, :d].view(np.int8), raw[:, d:d + a].view(np.int8),
            raw[:, d + a:].copy().view(np.int16), "the host build")


def verify(model: IntegerModel, core: Core, obs: np.ndarray) -> None:
    compare(model, obs, *core.batch(model, obs), f"the {core.t.name} build (emulated)")


def write_report(report: McuReport, path: Path) -> None:
    run = "qpolicy_step_run" if report.recurrent else "qpolicy_run"
    d = asdict(report) | {"flash": report.flash, "ram": report.ram, "latency_us": report.latency_us,
                          "latency_us_int_obs": report.latency_us_int_obs,
                          "latency_note": "instructions / clock: ignores wait states and pipeline stalls",
                          "instructions_note": "instructions_per_action: from a float observation, "
                          f"qpolicy_quantize_obs then {run} (what a control loop pays); "
                          f"instructions_per_action_int_obs: from an integer observation, {run} alone"}
    if report.recurrent:
        d["state_note"] = "state: bytes of qpolicy_state, kept by the caller between steps; counted in ram"
    else:  # a stateless report keeps the fields it always had
        del d["state"], d["recurrent"]
    path.write_text(json.dumps(d, indent=2) + "\n")

