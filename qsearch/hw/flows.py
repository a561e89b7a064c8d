"""Hardware flows: plain lists of step names, run in order over one HwConfig, as FINN's builder runs its
own (finn.builder.build_dataflow_config.estimate_only_dataflow_steps).

Every flow starts from a policy's model, the one its first step takes (STARTS): FINN's from the QONNX
model (a qonnx ModelWrapper), the open flow from the integer model (qsearch/quant/integer.py, or a
logic-circuit policy's, qsearch/quant/lut_integer.py, which has no FINN form); and ends with a step
that returns the design's figures (an Estimate, qsearch/hw/estimate.py). It is split at its
first per-target step (qsearch/hw/step_registry.py): the steps before it run once per policy
(`prepare`; the sweep caches their result per worker, by content), the steps from it on run for each
throughput target, or for a given folding config, on a copy of that result (`estimate`).

Adding a flow is adding a list:
  1. write its steps in a module of their own (as qsearch/hw/open_steps.py): functions
     `step_...(model, cfg)` registered with `@step()`, or `@step(per_target=True)` for those that
     read cfg.target_fps or cfg.folding; the last one returns an Estimate;
  2. import that module below, so its steps register, add its list to FLOWS and what it starts from to
     STARTS (and a check of the configuration, run before any work, to `resolve`);
  3. `qsearch hw --flow NAME` passes the name to sweep.run(flow=...).
"""
from __future__ import annotations

import copy

from qsearch.errors import QsearchError
from qsearch.hw import finn_steps  # noqa: F401  (registers FINN's steps)
from qsearch.hw import open_steps
from qsearch.hw.config import HwConfig
from qsearch.hw.estimate import Estimate
from qsearch.hw.step_registry import PER_TARGET, STEPS

#: FINN's estimate-only build (estimate_only_dataflow_steps), with the folding of each target.
FINN = [
    "step_qonnx_to_finn",
    "step_tidy_up",
    "step_streamline",
    "step_convert_to_hw",
    "step_minimize_bit_width_initial",
    "step_create_dataflow_partition",
    "step_specialize_layers",
    "step_target_fps_parallelization",
    "step_apply_folding_config",
    "step_minimize_bit_width",
    "step_generate_estimate_reports",
]

#: qsearch's own RTL from the integer model, verified in verilator, synthesized with yosys (issue 17).
OPEN = [
    "step_integer_model",
    "step_choose_architecture",
    "step_synthesize_and_verify",
]

#: Every flow by the name a caller chooses it by.
FLOWS = {"finn": FINN, "open": OPEN}
#: What each flow's first step takes: the policy's QONNX file (bytes) or its IntegerModel (or IntLUTModel).
STARTS = {"finn": "qonnx", "open": "integer"}
DEFAULT = "finn"
#: What a caller can choose: a flow, or both side by side.
CHOICES = [*FLOWS, "both"]


def resolve(choice: str, cfg: HwConfig) -> list[str]:
    """The flows a choice stands for ("both": FINN's and the open one), once the configuration is checked
    to suit each of them; a QsearchError (before any work) if it does not."""
    if choice not in CHOICES:
        raise QsearchError(f"unknown hardware flow {choice!r}; choose one of {', '.join(CHOICES)}")
    names = list(FLOWS) if choice == "both" else [choice]
    if cfg.check_netlist and "open" not in names:
        raise QsearchError("--check-netlist simulates the open flow's synthesized netlists: use it with --flow open or both")
    if "open" in names:
        open_steps.check(cfg)
    return names


def split(flow: list[str]) -> tuple[list[str], list[str]]:
    """The per-policy steps (up to the first per-target one) and the per-target steps of a flow."""
    first = next((i for i, name in enumerate(flow) if name in PER_TARGET), len(flow))
    return flow[:first], flow[first:]


def run(model, steps: list[str], cfg: HwConfig):
    """The model after each named step in turn."""
    for name in steps:
        model = STEPS[name](model, cfg)
    return model


def prepare(start, cfg: HwConfig, flow: str = DEFAULT):
    """The per-policy part of a flow on what the flow starts from (STARTS): a QONNX file's bytes, or an
    IntegerModel."""
    if STARTS[flow] == "qonnx":
        from qonnx.core.modelwrapper import ModelWrapper

        start = ModelWrapper(start)
    return run(start, split(FLOWS[flow])[0], cfg)


def estimate(prepared, cfg: HwConfig, flow: str = DEFAULT) -> Estimate:
    """The per-target part of a flow on a copy of the prepared model: cfg sets the target or the folding."""
    return run(copy.deepcopy(prepared), split(FLOWS[flow])[1], cfg)
