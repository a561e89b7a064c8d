"""Hardware flows: plain lists of step names, run in order over one HwConfig, as FINN's builder runs its
own (finn.builder.build_dataflow_config.estimate_only_dataflow_steps).

Every flow starts from a policy's QONNX model (a qonnx ModelWrapper) and ends with a step that returns
the design's figures (an Estimate, qsearch/hw/estimate.py). It is split at its first per-target step
(qsearch/hw/step_registry.py): the steps before it run once per policy (`prepare`; the sweep caches
their result per worker, by QONNX content), the steps from it on run for each throughput target, or
for a given folding config, on a copy of that result (`estimate`).

Adding a flow is adding a list. For the open-synthesis flow (issue 17: RTL from qsearch's integer
model, synthesized with yosys), say:
  1. write its steps in a module of their own, e.g. qsearch/hw/open_steps.py: functions
     `step_...(model, cfg)` registered with `@step()`, or `@step(per_target=True)` for those that
     read cfg.target_fps or cfg.folding; the last one returns an Estimate;
  2. import that module below, so its steps register, and add `OPEN = ["step_...", ...]` and
     `"open": OPEN` to FLOWS;
  3. give `qsearch hw` a `--flow` option (choices: FLOWS) that passes the name to sweep.run(flow=...).
"""
from __future__ import annotations

import copy

from qsearch.hw import finn_steps  # noqa: F401  (registers FINN's steps)
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

#: Every flow by the name a caller chooses it by.
FLOWS = {"finn": FINN}
DEFAULT = "finn"


def split(flow: list[str]) -> tuple[list[str], list[str]]:
    """The per-policy steps (up to the first per-target one) and the per-target steps of a flow."""
    first = next((i for i, name in enumerate(flow) if name in PER_TARGET), len(flow))
    return flow[:first], flow[first:]


def run(model, steps: list[str], cfg: HwConfig):
    """The model after each named step in turn."""
    for name in steps:
        model = STEPS[name](model, cfg)
    return model


def prepare(qonnx: bytes, cfg: HwConfig, flow: str = DEFAULT):
    """The per-policy part of a flow on a QONNX model (its file's bytes)."""
    from qonnx.core.modelwrapper import ModelWrapper

    return run(ModelWrapper(qonnx), split(FLOWS[flow])[0], cfg)


def estimate(prepared, cfg: HwConfig, flow: str = DEFAULT) -> Estimate:
    """The per-target part of a flow on a copy of the prepared model: cfg sets the target or the folding."""
    return run(copy.deepcopy(prepared), split(FLOWS[flow])[1], cfg)
