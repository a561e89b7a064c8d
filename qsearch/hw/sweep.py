"""The throughput-driven folding sweep: one Ray task per (policy, target), the highest fitting target kept.

The driver exports each policy to QONNX once; each task runs the per-target steps of a hardware flow
(qsearch/hw/flows.py) for one target. A worker keeps the prepared model of each QONNX file it has
seen, so FINN is imported and the per-policy steps (~0.7 s) run once per worker and policy; folding
and estimates take 10-60 ms per target.
Tasks may require a custom Ray resource (e.g. `finn`), so a cluster sends them to nodes with FINN.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch.hw import flows, power
from qsearch.hw.config import HwConfig
from qsearch.hw.policies import HwPolicy, padded
from qsearch.hw.qonnx_export import export_actor

SOURCE = "FINN estimate"


@dataclass(frozen=True)
class SweepConfig:
    """The hardware configuration of a sweep, and where its Ray tasks run."""

    hw: HwConfig = field(default_factory=HwConfig)
    resource: str | None = None  # custom Ray resource each task requires, e.g. "finn"
    address: str | None = None  # Ray cluster to join (auto, host:port or ray://...); None: a local Ray

    def record(self) -> dict:
        """The settings as hw.json records them."""
        return {**self.hw.record(), "resource": self.resource, "address": self.address}


@dataclass
class Row:
    """One (policy, target): FINN's estimates, the power estimate and the fit check."""

    policy: str
    target_fps: float
    lut: float
    bram18: float
    dsp: float
    max_cycles: int
    latency_us: float
    actions_per_s: float
    power_w: float
    energy_j: float
    fits: bool
    over: list[str]
    pad: int | None
    ff: float | None = None  # FINN gives no FF estimate; filled by synthesis
    source: str = SOURCE
    layers: list[dict] = field(default_factory=list)
    folding: dict = field(default_factory=dict)


_PREPARED: dict = {}  # per worker process: (QONNX file hash, flow, config) -> prepared model
_PREPARED_MAX = 16  # a long-lived cluster worker keeps only the latest policies


def estimate_row(policy: str, qonnx: bytes, target: float, cfg: HwConfig, flow: str = flows.DEFAULT) -> Row:
    """A flow's figures for one (policy, target); what each Ray task runs. The QONNX model comes as
    bytes through Ray's object store, so a task on another node needs no shared filesystem."""
    key = (hashlib.sha256(qonnx).hexdigest(), flow, cfg)  # by content, not by name
    if key not in _PREPARED:
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = flows.prepare(qonnx, cfg, flow)
    est = flows.estimate(_PREPARED[key], cfg.for_target(target), flow)
    dev = cfg.device
    p = power.power_w(est.lut, est.bram18, est.dsp, cfg.clock_ns)
    return Row(policy, float(target), est.lut, est.bram18, est.dsp, est.max_cycles, est.latency_ns / 1e3,
               est.throughput, p, power.energy_per_action_j(p, est.throughput),
               dev.fits(est.lut, est.bram18, est.dsp), dev.over(est.lut, est.bram18, est.dsp), cfg.pad,
               layers=[asdict(l) for l in est.layers], folding=est.folding)


def export_policies(policies: list[HwPolicy], pad: int | None, out_dir: Path) -> dict[str, Path]:
    """Each policy (padded when asked) as a QONNX file in out_dir."""
    paths = {}
    for i, p in enumerate(policies):
        paths[p.name] = export_actor(padded(p.actor, pad), Path(out_dir) / f"policy{i}.onnx")
    return paths


def run(policies: list[HwPolicy], cfg: SweepConfig, work_dir: Path, progress=None, flow: str = flows.DEFAULT) -> list[Row]:
    """Sweep every policy over every target as Ray tasks of a flow; rows in (policy, target) order."""
    import ray

    if len({p.name for p in policies}) != len(policies):
        raise QsearchError("policy names in a sweep must be unique")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    onnx = export_policies(policies, cfg.hw.pad, work_dir)
    started = ray_init(cfg.resource, cfg.address)
    try:
        task = ray.remote(estimate_row)
        if cfg.resource:
            task = task.options(resources={cfg.resource: 1})
        blobs = {name: ray.put(path.read_bytes()) for name, path in onnx.items()}  # once per policy, not per task
        refs = {ref: i for i, ref in enumerate(
            task.remote(p.name, blobs[p.name], t, cfg.hw, flow) for p in policies for t in cfg.hw.targets)}
        rows: list[Row | None] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows[refs[done[0]]] = ray.get(done[0])
            if progress:
                progress(len(refs) - len(pending), len(refs), rows[refs[done[0]]])
        return rows
    finally:
        if started:
            ray.shutdown()


def ray_init(resource: str | None, address: str | None = None) -> bool:
    """Join the Ray cluster at `address` (or $RAY_ADDRESS), or start a private local one offering
    `resource` on every CPU (address="local": never attach to another program's Ray on this machine)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # keeps Ray from writing ~/.ray/auth_token
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        cpus = os.cpu_count() or 1
        ray.init(address="local", num_cpus=cpus, resources={resource: cpus} if resource else None, include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}})
    return True


def best(rows: list[Row]) -> dict[str, Row]:
    """For each policy the row of the highest target that fits the device (the paper's procedure).

    A higher target that FINN cannot fold any faster (the same throughput as a lower one, e.g. capped
    by mvau_wwidth_max) gives the same design and is not counted as higher. A policy that fits at no
    target is a QsearchError naming it and what it exceeds at its lowest target."""
    out, none_fit = {}, []
    for name in dict.fromkeys(r.policy for r in rows):
        mine = sorted((r for r in rows if r.policy == name), key=lambda r: r.target_fps)
        fitting = [r for r in mine if r.fits]
        if fitting:
            out[name] = max(fitting, key=lambda r: (r.actions_per_s, -r.target_fps))
        else:
            lo = mine[0]
            none_fit.append(f"{name} (at {lo.target_fps:g} actions/s: {lo.lut:.0f} LUT, {lo.bram18:g} BRAM18, "
                            f"{lo.dsp:g} DSP; over in {', '.join(lo.over)})")
    if none_fit:
        raise QsearchError(f"fits the device at no target: {'; '.join(none_fit)}")
    return out


def scratch_dir(parent: Path | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix="qsearch-hw-", dir=parent))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
