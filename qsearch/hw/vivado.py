"""Full synthesis with Vivado: FINN's out-of-context synthesis of a build folder, as a Ray task that
asks for a `vivado` resource so a cluster runs it on a node with Vivado. Without Vivado it refuses.
(The open flow's synthesis of qsearch's own RTL, with yosys, is qsearch/hw/rtl/yosys.py.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qsearch.errors import QsearchError

RESOURCE = "vivado"


def vivado_home() -> Path:
    """The Vivado installation XILINX_VIVADO points at; a QsearchError when there is none."""
    home = os.environ.get("XILINX_VIVADO")
    if not home:
        raise QsearchError("full synthesis needs Vivado: XILINX_VIVADO is not set "
                           "(FINN's estimates need no Vivado: run without --synth)")
    if not (Path(home) / "bin" / "vivado").is_file():
        raise QsearchError(f"full synthesis needs Vivado: XILINX_VIVADO={home} holds no bin/vivado")
    return Path(home)


def run_build(build_dir: str) -> dict:
    """Run a build folder's build.py (FINN's builder: hardware, stitched IP, OOC synthesis); its results."""
    vivado_home()
    folder = Path(build_dir)
    done = subprocess.run([sys.executable, str(folder / "build.py")], cwd=folder, capture_output=True, text=True)
    report = folder / "output" / "report" / "ooc_synth_and_timing.json"
    if done.returncode != 0 or not report.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise QsearchError(f"FINN's synthesis of {folder} failed (exit {done.returncode}): {tail[0]}")
    return json.loads(report.read_text())


def synthesize(build_dirs: list[Path]) -> list[dict]:
    """Out-of-context synthesis of each build folder as a Ray task requiring the `vivado` resource."""
    vivado_home()  # refuse before starting anything
    import ray

    from qsearch import ray_session

    with ray_session.session(resource=RESOURCE):  # a local Ray offers `vivado` here, since this machine has Vivado
        task = ray.remote(run_build).options(resources={RESOURCE: 1})
        return ray.get([task.remote(str(d)) for d in build_dirs])
