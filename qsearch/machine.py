"""Where a result was made: the CPU and the library versions, recorded in every trial's run and
every bundle. A learning outcome can depend on the CPU's kernels (torch picks AVX2 or AVX512 code
paths, whose float sums differ in the last bits, and RL amplifies that); with this record a result
that differs between machines can be told apart from one that differs by mistake."""
from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

LIBRARIES = ("qsearch", "torch", "numpy", "brevitas", "gymnasium", "mujoco", "ray", "mlflow", "qonnx", "onnx")


def processor() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def describe() -> dict:
    """{"cpu": model, "cpu_capability": torch's kernel level (e.g. AVX512), "python": ..., "versions": {...}}."""
    import torch

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": processor(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "python": platform.python_version(), "versions": versions}
