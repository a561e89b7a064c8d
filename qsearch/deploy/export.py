"""`qsearch export`: a bundle (folder or MLflow run id) -> a deploy folder in one of four formats.

  qonnx  policy.onnx: the QONNX graph (qsearch.hw.qonnx_export), checked against the integer engine
  json   policy.json: the integer model, documented in deploy/README.md
  c      C99 sources for microcontrollers (qsearch.deploy.c_export); prints flash and RAM needs
  finn   a FINN build folder for a machine with Vivado (qsearch.hw.build_folder)
  verilog  RTL with a self-checking testbench (qsearch.hw.rtl.export)

The folder is written under a temporary name beside `out` and renamed into place.
"""
from __future__ import annotations

from pathlib import Path

from qsearch import bundle as bundles
from qsearch.atomic import replaced_folder
from qsearch.errors import QsearchError

FORMATS = ("qonnx", "json", "c", "finn", "verilog")


def export(ref: str, fmt: str, out: Path, tracking_uri: str | None = None, force: bool = False) -> list[str]:
    """Export the bundle named by `ref` to the folder `out`; returns lines describing what was written."""
    if fmt not in FORMATS:
        raise QsearchError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    _check_out(out, force)
    from qsearch.locate import locate_bundle

    b = bundles.read(locate_bundle(ref, tracking_uri))
    if b.integer is None:
        raise QsearchError(f"{b.path} holds an FP32 policy without an integer model; export needs a quantized "
                           "policy (train with quantization, or run `qsearch ptq` on it)")
    with replaced_folder(out) as tmp:
        lines = _WRITERS[fmt](b, tmp)
    return [f"wrote {out} ({fmt}) from {b.path}", *lines]


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise QsearchError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise QsearchError(f"{out} exists and is not empty; pass --force to replace it")


def _json(b: bundles.Bundle, tmp: Path) -> list[str]:
    from qsearch.deploy.json_export import write_json

    path = write_json(b.integer, b.action_scale, b.action_bias, b.config.env_id, tmp / "policy.json")
    return [f"integer model: {path.name} ({path.stat().st_size} bytes)"]


def _c(b: bundles.Bundle, tmp: Path) -> list[str]:
    from qsearch.deploy.c_export import write_c

    return write_c(b.integer, b.action_scale, b.action_bias, tmp).describe()


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


_WRITERS = {"qonnx": _qonnx, "json": _json, "c": _c, "finn": _finn, "verilog": _verilog}
