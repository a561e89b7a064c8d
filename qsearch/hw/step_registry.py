"""The registry of hardware steps: every function a flow (qsearch/hw/flows.py) can name.

A step is `step(model, cfg: HwConfig) -> model`, registered under its function name by the `@step`
decorator, as FINN's builder registers its own (register_build_dataflow_step). A step that reads the
per-target fields of the configuration (`target_fps`, `folding`) is registered with per_target=True:
a flow runs it, and every step after it, once per throughput target.
"""
from __future__ import annotations

from typing import Any, Callable

Step = Callable[[Any, Any], Any]

STEPS: dict[str, Step] = {}
PER_TARGET: set[str] = set()


def step(per_target: bool = False) -> Callable[[Step], Step]:
    """Register the decorated function as a step under its name; step names are unique across flows."""
    def register(fn: Step) -> Step:
        if fn.__name__ in STEPS:
            raise ValueError(f"a hardware step named {fn.__name__} is registered already")
        STEPS[fn.__name__] = fn
        if per_target:
            PER_TARGET.add(fn.__name__)
        return fn
    return register
