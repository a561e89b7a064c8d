"""The throughput-driven folding sweep: one Ray task per (policy, flow, target), the highest fitting
target kept per policy and flow.

The driver makes what each flow starts from once per policy (its QONNX file for FINN's flow, its integer
model for the open flow); each task runs the per-target steps of a hardware flow (qsearch/hw/flows.py)
for one target. A worker keeps the prepared model of each policy it has seen, so FINN is imported and
the per-policy steps (~0.7 s) run once per worker and policy; FINN's folding and estimates take 10-60
ms per target, an open-flow design (verilator, yosys) seconds to minutes.
Tasks may require a custom Ray resource (e.g. `finn`), so a cluster sends them to nodes with FINN.
"""
from __future__ import annotations

import hashlib
import math
import pickle
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qsearch import ray_session
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
    """One (policy, flow, target): the flow's figures, power and energy per action from the fit to the paper's
    Table 3 (FINN's flow only: qsearch/hw/power.py) and the fit check."""

    policy: str
    target_fps: float
    lut: float
    bram18: float
    dsp: float
    max_cycles: int
    latency_us: float
    actions_per_s: float
    power_w_fit: float | None  # power.power_w on this row's counts; None: the fit is not applied (the open flow)
    energy_j_fit: float | None  # power_w_fit / actions_per_s
    fits: bool
    over: list[str]
    pad: int | None
    ff: float | None = None  # FINN gives no FF estimate; filled by synthesis
    source: str = SOURCE
    layers: list[dict] = field(default_factory=list)
    folding: dict = field(default_factory=dict)
    flow: str = flows.DEFAULT
    arch: str = ""  # e.g. "parallel", "folded 1x8 1x1 1x1" (PE x SIMD per layer)
    latency_cycles: int | None = None
    carry4: int | None = None  # synthesis only
    lut_levels: int | None = None  # synthesis only: LUTs on the longest register-to-register path
    note: str = ""  # the open flow: the RTL check's line, or why a design was not synthesized
    power_source: str | None = None  # power.SOURCE where power_w_fit is set, else None
    netlist_check: str | None = None  # the open flow with check_netlist: the netlist simulation's line; None: not run


_PREPARED: dict = {}  # per worker process: (policy content hash, flow, config) -> prepared model
_PREPARED_MAX = 16  # a long-lived cluster worker keeps only the latest policies


def estimate_row(policy: str, start, target: float, cfg: HwConfig, flow: str = flows.DEFAULT) -> Row:
    """A flow's figures for one (policy, target); what each Ray task runs. What the flow starts from
    (flows.STARTS: QONNX bytes or an IntegerModel) comes through Ray's object store, so a task on another
    node needs no shared filesystem."""
    blob = start if isinstance(start, bytes) else pickle.dumps(start)
    key = (hashlib.sha256(blob).hexdigest(), flow, cfg)  # by content, not by name
    if key not in _PREPARED:
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = flows.prepare(start, cfg, flow)
    est = flows.estimate(_PREPARED[key], cfg.for_target(target), flow)
    dev = cfg.device
    if est.source == SOURCE:  # the power model is a fit to FINN's estimates (qsearch/hw/power.py)
        p = power.power_w(est.lut, est.bram18, est.dsp, cfg.clock_ns)
        e = power.energy_per_action_j(p, est.throughput)
    else:
        p = e = None
    over = dev.over(est.lut, est.bram18, est.dsp, est.ff)
    if math.isnan(est.lut):  # a design too large to synthesize (open_steps.LUT_PER_WEIGHT)
        over = [f"LUT, {est.note}"]
    return Row(policy, float(target), est.lut, est.bram18, est.dsp, est.max_cycles, est.latency_ns / 1e3,
               est.throughput, p, e, not over, over, cfg.pad, ff=est.ff, source=est.source,
               layers=[asdict(l) for l in est.layers], folding=est.folding, flow=flow, arch=est.architecture,
               latency_cycles=est.critical_path_cycles, carry4=est.carry4, lut_levels=est.lut_levels, note=est.note,
               power_source=None if p is None else power.SOURCE, netlist_check=est.netlist_check)


def export_policies(policies: list[HwPolicy], pad: int | None, out_dir: Path) -> dict[str, Path]:
    """Each policy (padded when asked) as a QONNX file in out_dir."""
    paths = {}
    for i, p in enumerate(policies):
        paths[p.name] = export_actor(padded(p.actor, pad), Path(out_dir) / f"policy{i}.onnx")
    return paths


def integer_models(policies: list[HwPolicy], pad: int | None) -> dict:
    """Each policy's integer model (padded when asked): an IntegerModel, or a logic-circuit policy's
    IntLUTModel. The hardware takes input integers (thermometer levels), so the observation normalization
    (host side, no effect on the integers) is the identity here."""
    from qsearch.obs_norm import ObsNorm
    from qsearch.quant import integer, lut_integer
    from qsearch.quant.lut_actor import LUTActor

    out = {}
    for p in policies:
        actor = padded(p.actor, pad)
        extract = lut_integer.extract if isinstance(actor, LUTActor) else integer.extract
        out[p.name] = extract(actor, ObsNorm.identity(actor.obs_dim))  # FP32: refused
    return out


def run(policies: list[HwPolicy], cfg: SweepConfig, work_dir: Path, progress=None, flow: str = flows.DEFAULT) -> list[Row]:
    """Sweep every policy over every target as Ray tasks of a flow ("both": FINN's and the open one);
    rows in (policy, flow, target) order."""
    import ray

    if len({p.name for p in policies}) != len(policies):
        raise QsearchError("policy names in a sweep must be unique")
    names = flows.resolve(flow, cfg.hw)  # refuses a part the flow cannot target, before any work
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    starts = {}
    if any(flows.STARTS[f] == "integer" for f in names):
        starts["integer"] = integer_models(policies, cfg.hw.pad)  # an FP32 policy is refused here
    if any(flows.STARTS[f] == "qonnx" for f in names):
        starts["qonnx"] = {k: v.read_bytes() for k, v in export_policies(policies, cfg.hw.pad, work_dir).items()}
    # FINN's and brevitas' warnings would only fill the workers' log files
    with ray_session.session(cfg.address, resource=cfg.resource, worker_env={"PYTHONWARNINGS": "ignore"}):
        task = ray.remote(estimate_row)
        if cfg.resource:
            task = task.options(resources={cfg.resource: 1})
        # each policy's start once into the object store, not once per task
        blobs = {kind: {name: ray.put(v) for name, v in by_name.items()} for kind, by_name in starts.items()}
        refs = {ref: i for i, ref in enumerate(
            task.remote(p.name, blobs[flows.STARTS[f]][p.name], t, cfg.hw, f)
            for p in policies for f in names for t in cfg.hw.targets)}
        rows: list[Row | None] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows[refs[done[0]]] = ray.get(done[0])
            if progress:
                progress(len(refs) - len(pending), len(refs), rows[refs[done[0]]])
        return rows


def best(rows: list[Row]) -> dict[tuple[str, str], Row]:
    """For each (policy, flow) the row of the highest target that fits the device (the paper's procedure).

    A higher target that the flow cannot make any faster (the same throughput as a lower one, e.g. FINN
    capped by mvau_wwidth_max) gives the same design and is not counted as higher. A policy that fits at
    no target has no entry (fits_nowhere names it)."""
    out = {}
    for key in dict.fromkeys((r.policy, r.flow) for r in rows):
        fitting = [r for r in rows if (r.policy, r.flow) == key and r.fits]
        if fitting:
            out[key] = max(fitting, key=lambda r: (r.actions_per_s, -r.target_fps))
    return out


def fits_nowhere(rows: list[Row], chosen: dict[tuple[str, str], Row]) -> dict[tuple[str, str], Row]:
    """For each (policy, flow) that fits the device at no target: its row at the lowest target (the
    cheapest design the sweep tried), which says what it exceeds."""
    out = {}
    for key in dict.fromkeys((r.policy, r.flow) for r in rows):
        if key not in chosen:
            out[key] = min((r for r in rows if (r.policy, r.flow) == key), key=lambda r: r.target_fps)
    return out


def nowhere_line(lo: Row) -> str:
    """One policy and flow that fits at no target, with what its lowest target's design exceeds."""
    counts = "" if math.isnan(lo.lut) else f"{lo.lut:,.0f} LUT, {lo.bram18:g} BRAM18, {lo.dsp:g} DSP; "
    return (f"{lo.policy} ({lo.flow} flow at {lo.target_fps:g} actions/s, its lowest target: {counts}"
            f"over in {', '.join(lo.over)})")


def scratch_dir(parent: Path | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix="qsearch-hw-", dir=parent))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
