"""`qsearch hw`: collect the policies, sweep them, pick each one's design, report, log to MLflow."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch.hw import flows, hw_report, power, sweep
from qsearch.hw.config import HwConfig
from qsearch.hw.policies import HwPolicy, paper_policies, reference_actor

DEFAULT_OUT_ROOT = Path("hw_builds")


@dataclass
class Source:
    """A policy and, when it came from an MLflow run, where to log the hardware report."""

    policy: HwPolicy
    run_id: str | None = None
    tracking_uri: str | None = None


@dataclass
class HwResult:
    rows: list[sweep.Row]
    chosen: dict[tuple[str, str], sweep.Row]  # (policy, flow) -> the highest fitting target's row
    nowhere: dict[tuple[str, str], sweep.Row]  # (policy, flow) fitting at no target -> its lowest target's row
    out: Path
    table: str
    notes: list[str]
    logged_runs: list[str] = field(default_factory=list)


def policy_name(b) -> str:
    p, q = b.config.policy, b.config.policy.quant
    if p.lut:
        return (f"{b.config.env_id} lut t{p.thermometer_bits} l{'-'.join(map(str, p.luts))}k{p.lut_inputs} "
                f"o{q.bits_out} s{b.config.seed}")
    return f"{b.config.env_id} h{p.width} in{q.bits_in} w{q.bits_weight} a{q.bits_act} s{b.config.seed}"


def _from_bundle(path: Path, run_id=None, uri=None) -> Source:
    from qsearch import bundle as bundles

    b = bundles.read(path)
    if not b.actor.quantized:
        raise QsearchError(f"{path} holds an FP32 policy: it has no integer hardware")
    b.require_stateless("FINN's dataflow and qsearch's RTL")
    return Source(HwPolicy(policy_name(b), b.actor, Path(path)), run_id, uri)


def sources(ref: str | None, tracking_uri: str | None = None, all_trials: bool = False) -> list[Source]:
    """The policies a reference names: a bundle folder, a search/selection folder (its bundles tagged
    qsearch.selected=true, or with all_trials every quantized trial its report shows), or an MLflow run
    id (with a tracking URI)."""
    if ref is None:
        return []
    path = Path(ref)
    from qsearch import locate

    folder = path.is_dir() and not (path / "bundle.json").is_file()
    if all_trials and not folder:
        raise QsearchError("--all-trials takes a search's or a selection's folder")
    if folder:
        if all_trials:
            from qsearch.select.report import folder_trials

            trials, uri = folder_trials(path)
            trials = [t for t in trials if not t.fp32]  # FP32 has no integer hardware: the report's band
        else:
            trials, uri = locate.selected_trials(path)
        return [_from_bundle(locate.locate_bundle(t.run_id, uri), t.run_id, uri) for t in trials]
    if path.is_dir():
        return [_from_bundle(path)]
    return [_from_bundle(locate.locate_bundle(ref, tracking_uri), ref, tracking_uri)]


def _unique(policies: list[HwPolicy]) -> list[HwPolicy]:
    seen: dict[str, int] = {}
    out = []
    for p in policies:
        n = seen[p.name] = seen.get(p.name, 0) + 1
        out.append(p if n == 1 else dataclasses.replace(p, name=f"{p.name} #{n}"))
    return out


def default_out(ref: str | None, paper: bool) -> Path:
    name = Path(ref.rstrip("/")).name if ref else ("paper" if paper else "hw")
    return DEFAULT_OUT_ROOT / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run_hw(ref: str | None, cfg: sweep.SweepConfig, out: Path | None = None, reference: bool = False,
           paper: bool = False, tracking_uri: str | None = None, synth: bool = False, progress=None,
           flow: str = flows.DEFAULT, all_trials: bool = False) -> HwResult:
    names = flows.resolve(flow, cfg.hw)  # an unknown flow, or a part it cannot target: refused before any work
    if synth:
        from qsearch.hw.vivado import vivado_home

        if "finn" not in names:
            raise QsearchError("--synth synthesizes FINN's designs with Vivado: use it with --flow finn or both")
        vivado_home()  # refuse before any work
    if ref is None and not paper:
        raise QsearchError("give a bundle, a search folder or a run id, or --paper for the paper's configurations")
    found = sources(ref, tracking_uri, all_trials)
    policies = [s.policy for s in found]
    if reference:  # the paper's reference design at the observation and action sizes of each task given
        sizes = {(p.actor.obs_dim, p.actor.act_dim): p.name.split()[0] for p in policies}  # name starts with the env id
        policies += [HwPolicy(f"{env} paper reference h256 in8 w4 a4", reference_actor(obs, act))
                     for (obs, act), env in sizes.items()]
    if paper:
        policies += paper_policies(reference)
    policies = _unique(policies)
    for s, p in zip(found, policies):
        s.policy = p
    out = Path(out) if out else default_out(ref, paper)
    work = sweep.scratch_dir()
    try:
        rows = sweep.run(policies, cfg, work, progress, flow=flow)
    finally:
        sweep.remove(work)
    chosen = sweep.best(rows)  # a policy that fits at no target is a row that says so, not a refusal
    if synth:
        rows, chosen = _synthesized(policies, chosen, cfg.hw, out, rows)
    hw_report.write(rows, chosen, cfg, out, {s.policy.name: s.run_id for s in found if s.run_id})
    result = HwResult(rows, chosen, sweep.fits_nowhere(rows, chosen), out, hw_report.table(rows, chosen),
                      hw_report.notes(cfg.hw, names, rows, chosen))
    result.logged_runs = _log(found, chosen, result.nowhere, out)
    return result


def _synthesized(policies, chosen, cfg: HwConfig, out, rows):
    """Build folders for FINN's chosen designs, synthesized by Vivado; their rows replace the estimates.
    A policy FINN fits at no target has no chosen design and is not synthesized."""
    from qsearch.hw.build_folder import write_build_folder
    from qsearch.hw.vivado import synthesize

    dirs = {}
    for p in policies:
        if (p.name, "finn") not in chosen:
            continue
        r = chosen[p.name, "finn"]
        dirs[p.name] = write_build_folder(p, out / "builds" / re.sub(r"\W+", "_", p.name), r.folding, cfg)
    if not dirs:
        return rows, chosen
    results = synthesize(list(dirs.values()))
    for name, res in zip(dirs, results):
        r = chosen[name, "finn"]
        fmax = float(res.get("fmax_mhz", 1e3 / cfg.clock_ns))
        r.lut, r.ff, r.dsp = float(res.get("LUT", r.lut)), float(res.get("FF", 0)), float(res.get("DSP", r.dsp))
        r.bram18 = float(res.get("BRAM_18K", 0)) + 2 * float(res.get("BRAM_36K", 0))
        r.actions_per_s = min(fmax, 1e3 / cfg.clock_ns) * 1e6 / r.max_cycles
        r.power_w_fit = power.power_w(r.lut, r.bram18, r.dsp, cfg.clock_ns)  # the fit, on Vivado's counts
        r.energy_j_fit = power.energy_per_action_j(r.power_w_fit, r.actions_per_s)
        r.power_source = power.SOURCE
        r.source = "post-synthesis (Vivado OOC)"
        r.fits = cfg.device.fits(r.lut, r.bram18, r.dsp, r.ff)
    return rows, chosen


def _log(found: list[Source], chosen: dict[tuple[str, str], sweep.Row], nowhere: dict[tuple[str, str], sweep.Row],
         out: Path) -> list[str]:
    """Log the report and each flow's chosen design's figures to each policy's MLflow run: FINN's as
    hw_<figure>, the open flow's as hw_open_<figure> (figures a flow does not give are left out); a
    flow in which the policy fits at no target logs no figures, and the source tag says so."""
    from qsearch import trial_record

    logged = []
    for s in found:
        if not (s.run_id and s.tracking_uri):
            continue
        figures, sources = {}, []
        for flow in dict.fromkeys(f for (name, f) in chosen | nowhere if name == s.policy.name):
            if (s.policy.name, flow) not in chosen:
                sources.append(f"{flow}: fits the device at no target")
                continue
            r = chosen[s.policy.name, flow]
            prefix = "" if flow == "finn" else f"{flow}_"
            figures.update({prefix + k: v for k, v in {
                "target_fps": r.target_fps, "lut": r.lut, "ff": r.ff, "bram18": r.bram18, "dsp": r.dsp,
                "latency_us": r.latency_us, "actions_per_s": r.actions_per_s, "power_w_fit": r.power_w_fit,
                "energy_per_action_j_fit": r.energy_j_fit}.items() if v is not None})
            sources.append(r.source)
        trial_record.log_hardware(s.tracking_uri, s.run_id, figures, "; ".join(sources), str(out))
        logged.append(s.run_id)
    return logged
