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
import socket
from contextlib import contextmanager

from qsearch import tracking
from qsearch.errors import QsearchError

# Ray's INFO lines ("Started a local Ray instance.") say nothing a qsearch user acts on.
_QUIET = dict(log_to_driver=False, configure_logging=True, logging_level="warning")


def cluster_address(address: str | None = None) -> str | None:
    """The cluster to join (`address`, else $RAY_ADDRESS), or None for a private local Ray.

    Refuses, in seconds, a cluster nothing answers at: Ray itself retries an unreachable address
    (or a stale "auto", left in /tmp/ray by a cluster that is gone) for minutes, printing only its
    own C++ warnings (measured with ray 2.x here: still waiting after 200 s, whatever its timeout
    settings). Commands call this before they write anything."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        return None
    target = address.removeprefix("ray://")
    if target == "auto":
        # Ray's own lookup of "auto" (private API, the one place qsearch uses it)
        from ray._private.services import canonicalize_bootstrap_address

        try:
            target = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            target = None
        if target is None:
            raise QsearchError("Ray cluster 'auto': no running Ray cluster found on this machine (ray start --head?)")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise QsearchError(f"Ray cluster {address}: not an address (auto, host:port or ray://host:port)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise QsearchError(f"Ray cluster {address}: nothing answers at {target} ({e.strerror or e})") from None
    return address


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
    address = cluster_address(address)
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
