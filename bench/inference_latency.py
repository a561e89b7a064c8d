"""Per-action inference latency, batch 1, for the paper's Hopper configuration.

Policy: 11 observations -> 16 -> 16 -> 3 actions, 6-bit input, 2-bit weights and hidden activations,
8-bit output (paper Table 1, Hopper). Weights are random; the activation scales are set by a short
statistics warm-up on random inputs (latency does not depend on how well the policy was trained).

Engines, each from a normalized float observation to actions in [-1, 1] unless noted:
  torch FP32          the FP32 actor of the same width, tanh(actor(x)) under no_grad
  brevitas eager      the QAT actor's brevitas forward (quant_forward), what QONNX export traces
  brevitas fused      the QAT actor's forward as qsearch runs it after the warm-up (qsearch.quant.fastpath)
  onnxruntime FP32    the FP32 actor exported with torch.onnx, one intra-op thread
  NumPy integer       qsearch's integer engine, input quantization included (IntegerModel.act)
  C integer           the exported C (qsearch export --format c), gcc -O2, timed inside a C loop:
                      integer observation -> Q1.15 actions (qpolicy_act_q15), CPU time per call

With --mcu, also the exported C on emulated microcontroller cores (qsearch.deploy.mcu: zig's clang,
unicorn) for the paper's five Table-1 configurations (random weights, qsearch.hw.policies; a random
observation normalization, as a trained policy has one), each
target and weight layout: instructions per action from a float observation (qpolicy_quantize_obs
then qpolicy_run, one call: what a control loop pays, the headline) and from an integer observation
(qpolicy_run alone), means over 32 random observations (qsearch.deploy.mcu.measure), the latency
estimates at the target's clock, flash (engine code + model constants + runtime helpers) and RAM
(stack high-water mark + static). Instruction counts are deterministic: a loaded machine does not
change them. Writes bench/results/mcu_instructions.{json,md}.

    .venv/bin/python bench/inference_latency.py --mcu [--targets cortex-m0 cortex-m4 ...]

Every Python engine runs one thread. Figures are per call: the best of several repeats of the mean
over many calls (best-of, because the machine is shared and other processes only add time). Writes
bench/results/inference_latency.{json,png}.

    .venv/bin/python bench/inference_latency.py [--calls 2000] [--c-calls 2000000]
"""
from __future__ import annotations

import argparse
import json
import warnings
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from qsearch.config import PolicyConfig, QuantBits
from qsearch.deploy import c_export
from qsearch.obs_norm import ObsNorm
from qsearch.quant import integer
from qsearch.quant.actor import QuantActor

OBS_DIM, ACT_DIM = 11, 3
HOPPER = PolicyConfig(width=16, depth=2, quant=QuantBits(bits_in=6, bits_weight=2, bits_act=2, bits_out=8))
REPEATS = 5
RESULTS = Path(__file__).resolve().parent / "results"


def best_per_call(fn, inputs: list, calls: int) -> float:
    """Seconds per call: the best over REPEATS of the mean over `calls` calls, cycling through inputs."""
    for x in inputs[:50]:  # warm caches and lazy initialization
        fn(x)
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        for i in range(calls):
            fn(inputs[i % len(inputs)])
        best = min(best, (time.perf_counter() - t) / calls)
    return best


def build_actors(seed: int = 0) -> tuple[QuantActor, QuantActor]:
    torch.manual_seed(seed)
    fp32 = QuantActor(OBS_DIM, ACT_DIM, PolicyConfig(width=16, depth=2, quant=None)).eval()
    qat = QuantActor(OBS_DIM, ACT_DIM, HOPPER)
    qat.train()
    with torch.no_grad():
        for _ in range(20):  # activation statistics on random inputs, then fixed scales
            qat(torch.randn(64, OBS_DIM) * 2)
    qat.eval()
    qat.freeze_scales()
    return fp32, qat


def torch_engine(module):
    def act(x):
        with torch.no_grad():
            return torch.tanh(module(x))
    return act


def onnxruntime_engine(fp32: QuantActor, folder: Path):
    import onnxruntime as ort

    class WithTanh(torch.nn.Module):
        def __init__(self, actor):
            super().__init__()
            self.actor = actor

        def forward(self, x):
            return torch.tanh(self.actor(x))

    path = folder / "fp32.onnx"
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
    torch.onnx.export(WithTanh(fp32), (torch.zeros(1, OBS_DIM),), str(path), input_names=["x"],
                      output_names=["a"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def c_engine(model: integer.IntegerModel, folder: Path, calls: int) -> float:
    src = folder / "c"
    src.mkdir()
    size = c_export.write_c(model, np.ones(ACT_DIM, np.float32), np.zeros(ACT_DIM, np.float32), src)
    print("  C export: " + "; ".join(size.describe()))
    exe = c_export.compile_harness(src, folder / "harness", ("-O2",))
    best = float("inf")
    for _ in range(REPEATS):
        out = subprocess.run([str(exe), "bench", str(calls)], capture_output=True, text=True, check=True).stdout
        best = min(best, float(re.match(r"([\d.]+) ns", out).group(1)) * 1e-9)
    return best


def mcu_table(targets: list[str]) -> None:
    """Instructions, flash and RAM per target and layout for the five Table-1 configurations."""
    from qsearch.deploy import mcu
    from qsearch.hw.policies import PAPER_TABLE1, random_actor

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for env, (obs, act, width, core, bits_in) in PAPER_TABLE1.items():
            cfg = PolicyConfig(width=width, depth=2, quant=QuantBits(bits_in, core, core, 8))
            # a normalization that is not the identity: software float skips work on a mean of 0 and a
            # std of 1 (Hopper on the M0: 12,507 instructions from a float observation instead of 17,338)
            rng = np.random.default_rng(0)
            norm = ObsNorm(rng.normal(0, 1, obs).astype(np.float32), rng.uniform(0.1, 5, obs).astype(np.float32))
            model = integer.extract(random_actor(cfg, obs, act), norm)
            macs = sum(layer.weight.size for layer in model.layers)
            for layout in c_export.LAYOUTS:
                src = Path(tmp) / f"{env}_{layout}"
                src.mkdir()
                c_export.write_c(model, np.ones(act, np.float32), np.zeros(act, np.float32), src, layout)
                for name in targets:
                    t = mcu.TARGETS[name]
                    mcu.build(src, t, src / name)
                    r = mcu.measure(model, t, layout, src / name)
                    rows.append({"policy": f"{env} {obs}-{width}-{width}-{act} in{bits_in} core{core}", "macs": macs,
                                 **vars(r), "flash": r.flash, "ram": r.ram,
                                 "per_mac_int_obs": r.instructions_per_action_int_obs / macs,
                                 "latency_us": r.latency_us, "latency_us_int_obs": r.latency_us_int_obs})
                    print(f"  {rows[-1]['policy']:<34} {layout:<6} {name:<9} {r.instructions_per_action:>10,.0f} "
                          f"instr from float obs, {r.instructions_per_action_int_obs:>9,.0f} from integer obs "
                          f"({r.instructions_per_action_int_obs / macs:4.1f}/MAC)  flash {r.flash:>7,}  "
                          f"RAM {r.ram:>5,}  ~{r.latency_us:,.0f} / {r.latency_us_int_obs:,.0f} us at {r.mhz:g} MHz",
                          flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mcu_instructions.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["Instructions per action from a float observation (qpolicy_quantize_obs then qpolicy_run: what a "
             "control loop pays) and from an integer observation (qpolicy_run alone), means over 32 random "
             "observations; per MAC from the integer observation; latency estimated at one instruction per cycle.",
             "",
             "| policy | MACs | layout | target | instructions per action, float obs | integer obs | per MAC | "
             "flash (B) | RAM (B) | est. latency, float obs | integer obs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['policy']} | {r['macs']:,} | {r['layout']} | {r['target']} | {r['instructions_per_action']:,.0f} | "
              f"{r['instructions_per_action_int_obs']:,.0f} | {r['per_mac_int_obs']:.1f} | {r['flash']:,} | "
              f"{r['ram']:,} | {r['latency_us']:,.0f} us at {r['mhz']:g} MHz | {r['latency_us_int_obs']:,.0f} us |"
              for r in rows]
    (RESULTS / "mcu_instructions.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'mcu_instructions.json'} and .md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per repeat for each Python engine")
    ap.add_argument("--c-calls", type=int, default=2_000_000, help="calls per repeat inside the C loop")
    ap.add_argument("--mcu", action="store_true", help="emulated microcontroller cores instead (see above)")
    ap.add_argument("--targets", nargs="+", default=["cortex-m0", "cortex-m4", "cortex-m7", "rv32imc"])
    a = ap.parse_args()
    if a.mcu:
        return mcu_table(a.targets)
    torch.set_num_threads(1)
    print(f"batch 1, {OBS_DIM}->16->16->{ACT_DIM}, {HOPPER.quant}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (shared machine: best of {REPEATS} repeats)")
    fp32, qat = build_actors()
    model = integer.extract(qat, ObsNorm.identity(OBS_DIM))
    rng = np.random.default_rng(0)
    xs = [rng.normal(0, 1, (1, OBS_DIM)).astype(np.float32) for _ in range(256)]
    ts = [torch.from_numpy(x) for x in xs]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines = [
            ("torch FP32", torch_engine(fp32), ts),
            ("brevitas eager", torch_engine(lambda x: qat.quant_forward(x)[-1].value), ts),
            ("brevitas fused", torch_engine(qat), ts),
            ("onnxruntime FP32", onnxruntime_engine(fp32, Path(tmp)), xs),
            ("NumPy integer", model.act, xs),
        ]
        for name, fn, inputs in engines:
            calls = a.calls if name != "brevitas eager" else max(1, a.calls // 10)  # ~3 ms a call
            results[name] = best_per_call(fn, inputs, calls)
            print(f"  {name:<18} {results[name] * 1e6:10.2f} us per action")
        results["C integer"] = c_engine(model, Path(tmp), a.c_calls)
        print(f"  {'C integer':<18} {results['C integer'] * 1e6:10.3f} us per action "
              f"(target < 1 us: {'met' if results['C integer'] < 1e-6 else 'NOT met'})")
    RESULTS.mkdir(exist_ok=True)
    meta = {"config": str(HOPPER), "load_average": os.getloadavg()[0], "seconds_per_action": results}
    (RESULTS / "inference_latency.json").write_text(json.dumps(meta, indent=2) + "\n")
    plot(results, RESULTS / "inference_latency.png")
    print(f"wrote {RESULTS / 'inference_latency.json'} and .png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    us = [results[n] * 1e6 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.barh(names, us, color=["#888"] * (len(names) - 1) + ["#2a7"])
    ax.set_xscale("log")
    ax.axvline(1.0, color="r", ls="--", lw=1)
    ax.text(1.0, -0.75, " 1 us target", color="r", va="center", fontsize=8)
    for bar, v in zip(bars, us):
        ax.text(v, bar.get_y() + bar.get_height() / 2, f" {v:.3g} us", va="center", fontsize=8)
    ax.set_ylim(len(names) - 0.5, -1.0)  # first engine on top, a row of room for the target's label
    ax.set_xlabel("microseconds per action, batch 1 (log scale)")
    ax.set_title("Hopper policy 11-16-16-3, 6-bit input, 2-bit core")
    ax.set_xlim(min(us) / 3, max(us) * 8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
