"""A FINN build folder for a policy, ready to run with FINN's builder on a machine with Vivado.

Contents:
  model.qonnx.onnx      the actor as exported by brevitas (for reference and re-runs from scratch)
  dataflow.onnx         FINN's dataflow partition after qsearch's estimate flow: HW layers, integer
                        input x_int and output o (the float input quantization and tanh stay on the host)
  folding_config.json   FINN folding configuration (PE, SIMD, memory styles per layer) chosen by the sweep
  build.py              runs finn.builder.build_dataflow on dataflow.onnx: folding, hardware generation,
                        stitched IP and out-of-context synthesis for the part at the clock
  build.json            part, clock, padding, target and FINN's estimates for that folding
"""
from __future__ import annotations

import json
from pathlib import Path

from qsearch.atomic import replaced_folder
from qsearch.errors import QsearchError
from qsearch.hw.config import HwConfig

FLOW = "finn"  # the folder is run by FINN's builder, so FINN's flow prepares it

BUILD_SCRIPT = '''"""Build the dataflow accelerator with FINN (needs Vivado: XILINX_VIVADO). Written by qsearch."""
import json
import sys
from pathlib import Path

import finn.builder.build_dataflow as build
import finn.builder.build_dataflow_config as build_cfg

here = Path(__file__).resolve().parent
meta = json.loads((here / "build.json").read_text())
cfg = build_cfg.DataflowBuildConfig(
    output_dir=str(here / "output"),
    synth_clk_period_ns=meta["clock_ns"],
    fpga_part=meta["part"],
    folding_config_file=here / "folding_config.json",
    mvau_wwidth_max=meta["mvau_wwidth_max"],
    steps=[
        "step_apply_folding_config",
        "step_minimize_bit_width",
        "step_generate_estimate_reports",
        "step_generate_hardware",
        "step_create_stitched_ip",
        "step_out_of_context_synthesis",
    ],
    generate_outputs=[
        build_cfg.DataflowOutputType.ESTIMATE_REPORTS,
        build_cfg.DataflowOutputType.STITCHED_IP,
        build_cfg.DataflowOutputType.OOC_SYNTH,
    ],
)
sys.exit(build.build_dataflow_cfg(str(here / "dataflow.onnx"), cfg))
'''


def write_build_folder(bundle, out_dir: Path, folding: dict | None = None, cfg: HwConfig | None = None) -> Path:
    """Write a FINN build folder for `bundle`'s actor to `out_dir` (atomically) and return it.

    `bundle`: anything with the quantized `actor` (a Bundle, or a sweep's HwPolicy).

    `folding`: a FINN folding config (node name -> attributes), as in a sweep row's `folding`. When None,
    cfg's targets are swept in this process and the highest fitting target's folding is used.

    `cfg`: the hardware configuration (default: HwConfig's defaults)."""
    from qsearch.hw import flows
    from qsearch.hw.policies import padded
    from qsearch.hw.qonnx_export import export_actor

    cfg = cfg or HwConfig()
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QsearchError(f"{out} exists and is not an empty folder")
    with replaced_folder(out) as tmp:
        qonnx = export_actor(padded(bundle.actor, cfg.pad), tmp / "model.qonnx.onnx")
        dataflow = flows.prepare(qonnx.read_bytes(), cfg, FLOW)
        target, est = _choose(dataflow, folding, cfg)
        dataflow.save(str(tmp / "dataflow.onnx"))
        (tmp / "folding_config.json").write_text(json.dumps({"Defaults": {}, **est.folding}, indent=2) + "\n")
        meta = {"part": cfg.device.part, "clock_ns": cfg.clock_ns, "pad": cfg.pad, "mvau_wwidth_max": cfg.mvau_wwidth_max,
                "target_fps": target, "finn_estimates": {
                    "LUT": est.lut, "BRAM18": est.bram18, "DSP": est.dsp, "max_cycles": est.max_cycles,
                    "latency_ns": est.latency_ns, "actions_per_s": est.throughput}}
        (tmp / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "build.py").write_text(BUILD_SCRIPT)
    return out


def _choose(dataflow, folding: dict | None, cfg: HwConfig):
    """(target, estimate) for a given folding, or for the highest of cfg's targets that fits."""
    from qsearch.hw import flows

    if folding is not None:
        return None, flows.estimate(dataflow, cfg.with_folding(folding), FLOW)
    fitting = [(t, e) for t in cfg.targets for e in [flows.estimate(dataflow, cfg.for_target(t), FLOW)]
               if cfg.device.fits(e.lut, e.bram18, e.dsp)]
    if not fitting:
        raise QsearchError(f"the policy fits {cfg.device.part} at no throughput target")
    return fitting[-1]
