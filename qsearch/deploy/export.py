"""`qsearch export`: a bundle (folder or MLflow run id) -> a deploy folder (or, for mlflow, a registered model).

  qonnx  policy.onnx: the QONNX graph (qsearch.hw.qonnx_export), checked against the integer engine
  json   policy.json: the integer model, documented in deploy/README.md
  c      C99 sources for microcontrollers (qsearch.deploy.c_export); prints flash and RAM needs. With
         a microcontroller target, also a build for it (qsearch.deploy.mcu) in DIR/TARGET/, measured on
         the emulated core, and with --verify checked there against the Python engine
  finn   a FINN build folder for a machine with Vivado (qsearch.hw.build_folder)
  mlflow an MLflow run's policy registered as a pyfunc model in its store (qsearch.deploy.mlflow_model);
         writes no folder
  verilog  RTL with a self-checking testbench (qsearch.hw.rtl.export)

The folder is written under a temporary name beside `out` and renamed into place.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qsearch import bundle as bundles
from qsearch.atomic import replaced_folder
from qsearch.errors import QsearchError

FORMATS = ("qonnx", "json", "c", "finn", "verilog", "mlflow")


@dataclass(frozen=True)
class COptions:
    """What `--format c` builds: the target, the weight layout and what to check."""

    target: str = "host"
    layout: str = "auto"  # int8 unless only packed fits flash_budget
    flash_budget: int | None = None  # bytes: the target build's measured flash, the model data for host
    verify: int | None = None  # observations to compare with the Python engine; None: no run
    mhz: float | None = None  # clock of the latency estimate; None: the target's default

    def check(self) -> None:
        from qsearch.deploy import c_export, mcu

        if mcu.target(self.target) is not None:
            mcu.require_tools()
        if self.layout not in (*c_export.LAYOUTS, "auto"):
            raise QsearchError(f"unknown layout {self.layout!r}; choose one of {', '.join(c_export.LAYOUTS)}, auto")
        for name, value in (("--flash-budget", self.flash_budget), ("--verify", self.verify), ("--clock-mhz", self.mhz)):
            if value is not None and value <= 0:
                raise QsearchError(f"{name} must be positive, not {value}")

    @property
    def is_default(self) -> bool:
        return self == COptions()


def export(ref: str, fmt: str, out: Path, tracking_uri: str | None = None, force: bool = False,
           c_options: COptions | None = None) -> list[str]:
    """Export the bundle named by `ref` to the folder `out`; returns lines describing what was written."""
    if fmt not in FORMATS:
        raise QsearchError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    c_options = c_options or COptions()
    if fmt != "c" and not c_options.is_default:
        raise QsearchError("--target, --layout, --flash-budget, --verify and --clock-mhz apply to --format c only")
    c_options.check()
    if fmt == "mlflow":
        return _mlflow(ref, out, tracking_uri)
    if out is None:
        raise QsearchError(f"--format {fmt} writes a folder: give --out")
    out = Path(out)
    _check_out(out, force)
    from qsearch.locate import locate_bundle

    b = bundles.read(locate_bundle(ref, tracking_uri))
    if b.integer is None:
        raise QsearchError(f"{b.path} holds an FP32 policy without an integer model; export needs a quantized "
                           "policy (train with quantization, or run `qsearch ptq` on it)")
    if fmt in STATELESS:
        b.require_stateless(STATELESS[fmt])
    if fmt in NETWORK_ONLY:
        b.require_network(NETWORK_ONLY[fmt])
    with replaced_folder(out) as tmp:
        lines = _c(b, tmp, c_options) if fmt == "c" else _WRITERS[fmt](b, tmp)
    return [f"wrote {out} ({fmt}) from {b.path}", *lines]


def _mlflow(ref: str, out, tracking_uri: str | None) -> list[str]:
    import os

    from qsearch.locate import locate_bundle

    if out is not None:
        raise QsearchError("--format mlflow registers the model in the tracking store and writes no folder: drop --out")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if Path(ref).is_dir() or not uri:
        raise QsearchError("--format mlflow registers an MLflow run's policy: give the run id and --tracking-uri "
                           "(or MLFLOW_TRACKING_URI)")
    bundle_path = locate_bundle(ref, uri)
    from qsearch.deploy.mlflow_model import register

    def write_exports(b: bundles.Bundle, folders: dict[str, Path]) -> None:
        _c(b, folders["c"], COptions())
        if b.config.policy.kind == "mlp" and not b.config.policy.recurrent:  # STATELESS, NETWORK_ONLY
            _qonnx(b, folders["qonnx"])

    return register(ref, uri, bundle_path, write_exports)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise QsearchError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise QsearchError(f"{out} exists and is not empty; pass --force to replace it")


def _json(b: bundles.Bundle, tmp: Path) -> list[str]:
    from qsearch.deploy.json_export import write_json

    path = write_json(b.integer, b.action_scale, b.action_bias, b.config.env_id, tmp / "policy.json",
                      b.config.observe)
    return [f"integer model: {path.name} ({path.stat().st_size} bytes)"]


def _c(b: bundles.Bundle, tmp: Path, opts: COptions) -> list[str]:
    """The C sources in the first layout that fits the flash budget, built and measured for the target."""
    import shutil

    from qsearch.deploy import c_export, mcu

    t = mcu.target(opts.target)
    tried, report = [], None
    layouts = ("int8", "packed") if opts.layout == "auto" else (opts.layout,)
    lut = b.config.policy.lut  # truth tables are bits whatever the layout: one build
    for layout in layouts[-1:] if lut else layouts:
        for old in tmp.iterdir():  # what the previous layout wrote
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        size = c_export.write_c(b.integer, b.action_scale, b.action_bias, tmp, layout)
        if t is not None:
            mcu.build(tmp, t, tmp / t.name)
            report = mcu.measure(b.integer, t, layout, tmp / t.name, opts.mhz)
            mcu.write_report(report, tmp / t.name / "report.json")
        flash = report.flash if report else size.flash
        tried.append(f"{layout}: {flash} bytes")
        if opts.flash_budget is None or flash <= opts.flash_budget:
            break
    else:
        what = f"the {t.name} build's flash" if t else "the model data"
        raise QsearchError(f"no weight layout fits the flash budget of {opts.flash_budget} bytes ({what}: "
                           f"{'; '.join(tried)})")
    lines = [f"layout: {mcu.LUT_TABLES if lut else layout + ' weights'}", *size.describe(),
             *(report.describe() if report else [])]
    if opts.verify:
        lines.append(_verify(b, t, tmp, opts.verify))
    return lines


def _verify(b: bundles.Bundle, t, src: Path, n: int) -> str:
    """The built C against the Python engine on `n` random observations and the special rows; a
    recurrent policy's as streams of whole episodes, the state carried on both sides."""
    import tempfile

    from qsearch.deploy import mcu, stateful

    where = "this host" if t is None else "the emulated " + t.name
    with tempfile.TemporaryDirectory() as work:
        if b.integer.recurrent:
            streams = stateful.verification_streams(b.integer, n)
            if t is None:
                stateful.verify_host(b.integer, b.action_scale, b.action_bias, src, Path(work), streams)
            else:
                core = mcu.Core(t, src / t.name / "emulator.elf")
                stateful.verify(b.integer, b.action_scale, b.action_bias, core, streams)
            return f"verified on {where}, {streams.describe()}: the same integers as the Python engine at every step"
        checks = mcu.verification_observations(b.integer, n)
        if t is None:
            mcu.verify_host(b.integer, src, Path(work), checks.obs)
        else:
            mcu.verify(b.integer, mcu.Core(t, src / t.name / "emulator.elf"), checks.obs)
    return f"verified on {where}, {checks.describe()}: the same integers as the Python engine"


def _qonnx(b: bundles.Bundle, tmp: Path) -> list[str]:
    from qsearch.hw.qonnx_export import export_qonnx

    path = export_qonnx(b, tmp / "policy.onnx")
    return [f"QONNX graph: {path.name} (checked against the integer engine)"]


def _finn(b: bundles.Bundle, tmp: Path) -> list[str]:
    from qsearch.hw.build_folder import write_build_folder

    # write_build_folder makes its own folder; it is moved into place with the rest
    folder = write_build_folder(b, tmp / "finn_build")
    return [f"FINN build folder: {folder.relative_to(tmp)} (run its build script where Vivado is installed)"]


def _verilog(b: bundles.Bundle, tmp: Path) -> list[str]:
    from qsearch.hw.rtl.export import write_verilog

    return write_verilog(b.integer, tmp)


_WRITERS = {"qonnx": _qonnx, "json": _json, "finn": _finn, "verilog": _verilog}
# Formats that cannot carry a recurrent policy's state: FINN and qsearch's RTL have no recurrent layers,
# and brevitas exports its QuantRNN/QuantLSTM to QONNX as unrolled custom ops that no QONNX consumer
# here executes, with no GRU among them.
STATELESS = {"qonnx": "QONNX export", "finn": "FINN's dataflow", "verilog": "qsearch's RTL"}
# Formats made of layers of multiply-accumulates: a logic-circuit policy has none (brevitas' QONNX
# graph and FINN's dataflow are built from the QAT network).
NETWORK_ONLY = {"qonnx": "QONNX export", "finn": "FINN's dataflow"}
