"""Ray for one command: join the cluster the user names, or start a private one on this machine.

Every qsearch command that uses Ray (search, the noise study, the hardware sweep, synthesis, PPO)
starts it here, so they all join the same way, log the same way and count CPUs the same way:

- `address` (the command's --address: "auto", "ray://host:port", ...) joins that cluster;
- else $RAY_ADDRESS, which `ray job submit` sets for the jobs it runs, joins that one;
- else a fresh local Ray with this machine's CPUs, never a Ray another program happens to run here.

Inside a process that already runs Ray (a Tune trial, a test's shared Ray) nothing is started.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

from qsearch import tracking

# Ray's INFO lines ("Started a local Ray instance.") say nothing a qsearch user acts on.
_QUIET = dict(log_to_driver=False, configure_logging=True, logging_level="warning")


def start(address: str | None = None, *, cpus: int = 0, resource: str | None = None,
          worker_env: dict[str, str] | None = None) -> bool:
    """Start or join Ray; False if this process already had it (then the caller must not shut it down).

    A local Ray offers max(cpus, the machine's CPUs) CPUs and, if `resource` is named, that custom
    resource on every CPU (so tasks that require it run here). worker_env: environment variables
    of the local Ray's workers."""
    import ray

    if ray.is_initialized():
        return False
    tracking.setup_environment()  # also keeps Ray from writing ~/.ray/auth_token
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **_QUIET)
    else:
        n = max(cpus, os.cpu_count() or 1)
        ray.init(address="local", num_cpus=n, resources={resource: n} if resource else None,
                 include_dashboard=False, runtime_env={"env_vars": worker_env} if worker_env else None, **_QUIET)
    return True


@contextmanager
def session(address: str | None = None, **kwargs):
    """start(), and on leaving shut Ray down again if this call started it."""
    import ray

    started = start(address, **kwargs)
    try:
        yield
    finally:
        if started:
            ray.shutdown()
