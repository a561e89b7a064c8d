"""Return against hardware cost: every quantized configuration of a search or a selection, networks and
logic circuits (LUT policies) on one figure per task and throughput, the Pareto front marked and FP32's
band drawn, and the same as a table (`qsearch report`).

A configuration's cost at a throughput target T is its open-flow design for T: the cheapest design of
qsearch's RTL that reaches T actions/s (qsearch/hw/rtl/arch.py chooses it), verified in verilator and
counted by yosys for the XC7A15T, before place-and-route. The designs come from the folder's
hw/hw.json, which `qsearch hw FOLDER --flow open --all-trials --targets 1e6 1e8 --out FOLDER/hw`
writes (its `runs` join each design to its trial). Seeds of one configuration train different weights
and so give different designs (a network's zero weights cost no logic): a configuration's LUTs and FFs
are the mean over its seeds' designs, its latency the largest; a configuration with a seed whose design
does not fit at T has no point at T. Only targets that some configuration fits are drawn.

A point is on the front when no other configuration of its task reaches at least its mean return with
at most its LUTs (and is better in one). "Matches FP32": for a selection, its record's verdict under
its rule; for a search, the paper's sigma rule against the task's FP32 configuration.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from qsearch.select import results
from qsearch.select import selection_record as rec
from qsearch.select.parity import Rule, verdict
from qsearch.select.results import Stats

FLOW = "open"
FIGURE = "fig6_pareto.png"


@dataclass(frozen=True)
class Point:
    env_id: str
    target_fps: float
    configuration: str
    family: str  # "mlp" or "lut"
    stats: Stats
    lut: float
    ff: float
    lut_levels: int | None
    latency_cycles: int
    matches_fp32: bool
    front: bool = False

    @property
    def label(self) -> str:
        return self.configuration.removeprefix(f"{self.env_id}/")


def points(data) -> list[Point]:
    """Every configuration's point at every target some configuration of its task fits; [] without
    open-flow designs of the folder's trials."""
    hw = data.hw or {}
    run_of = hw.get("runs", {})
    designs = {(run_of[r["policy"]], r["target_fps"]): r for r in hw.get("rows", [])
               if r["flow"] == FLOW and r["policy"] in run_of and r["fits"]}
    targets = sorted({t for _, t in designs})
    matches = _matches(data)
    out = []
    for t, stats in results.groups([t for t in data.trials if not t.fp32]):
        group = [x for x in data.trials if x.configuration == t.configuration]
        for target in targets:
            rows = [designs.get((x.run_id, target)) for x in group]
            if None in rows:
                continue
            levels = [r["lut_levels"] for r in rows if r.get("lut_levels") is not None]
            out.append(Point(t.env_id, target, t.configuration, t.family, stats,
                             sum(r["lut"] for r in rows) / len(rows), sum(r["ff"] or 0 for r in rows) / len(rows),
                             max(levels) if levels else None, max(r["latency_cycles"] for r in rows),
                             matches(t.configuration, stats, data.fp32[t.env_id])))
    return _with_front(out)


def _matches(data):
    """(configuration, stats, FP32 stats) -> matches FP32: a selection's own verdicts (its record holds
    each candidate's state under its rule), a search's by the paper's sigma rule."""
    if data.selection is not None:
        matched = {v.configuration for s in data.selection.stages for e in s.envs for v in e.values
                   if v.state == rec.MATCHED}
        return lambda configuration, stats, fp32: configuration in matched
    return lambda configuration, stats, fp32: verdict(stats, fp32, Rule()).match


def _with_front(pts: list[Point]) -> list[Point]:
    def dominated(p: Point) -> bool:
        return any(q.env_id == p.env_id and q.target_fps == p.target_fps and q.lut <= p.lut
                   and q.stats.mean >= p.stats.mean and (q.lut < p.lut or q.stats.mean > p.stats.mean) for q in pts)

    return [dataclasses.replace(p, front=not dominated(p)) for p in pts]


def table(pts: list[Point], fp32: dict[str, Stats]) -> list[str]:
    """Markdown: per task and target, the configurations by LUTs."""
    lines = []
    for env, target in sorted({(p.env_id, p.target_fps) for p in pts}):
        lines += [f"### {env} at {target:.0e} actions/s (FP32: {fp32[env]})", "",
                  "| configuration | family | return | LUT | FF | LUT levels | latency (cycles) | matches FP32 | front |",
                  "|---|---|---:|---:|---:|---:|---:|---|---|"]
        for p in sorted((p for p in pts if (p.env_id, p.target_fps) == (env, target)), key=lambda p: (p.lut, p.label)):
            levels = "-" if p.lut_levels is None else str(p.lut_levels)
            lines.append(f"| {p.label} | {p.family} | {p.stats} | {p.lut:,.0f} | {p.ff:,.0f} | {levels} | "
                         f"{p.latency_cycles} | {'yes' if p.matches_fp32 else 'no'} | {'*' if p.front else ''} |")
        lines.append("")
    return lines


MARKERS = {"mlp": ("o", "C0", "QAT network"), "lut": ("^", "C1", "logic circuit (LUT)")}


def figure(pts: list[Point], fp32: dict[str, Stats], path: Path) -> bool:
    """Return against LUTs, one panel per task (columns) and target (rows); False when there is nothing to draw."""
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({p.env_id for p in pts})
    targets = sorted({p.target_fps for p in pts})
    fig, axes = plt.subplots(len(targets), len(envs), figsize=(5.5 * len(envs), 4.2 * len(targets)), squeeze=False)
    for (i, target), (j, env) in ((a, b) for a in enumerate(targets) for b in enumerate(envs)):
        ax = axes[i][j]
        f = fp32[env]
        ax.axhspan(f.mean - f.std, f.mean + f.std, color="0.85", label="FP32 mean +- std")
        ax.axhline(f.mean, color="0.5", lw=1)
        here = [p for p in pts if (p.env_id, p.target_fps) == (env, target)]
        for family, (marker, colour, name) in MARKERS.items():
            fam = [p for p in here if p.family == family]
            if fam:
                ax.errorbar([p.lut for p in fam], [p.stats.mean for p in fam], yerr=[p.stats.std for p in fam],
                            fmt=marker, color=colour, ms=7, capsize=3, label=name)
        front = sorted((p for p in here if p.front), key=lambda p: p.lut)
        # a step: between two front points, the return the cheaper one already gives
        ax.step([p.lut for p in front], [p.stats.mean for p in front], "k--", where="post", lw=1, label="Pareto front")
        for p in here:
            ax.annotate(p.label, (p.lut, p.stats.mean), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("LUTs (yosys, XC7A15T, before place-and-route)")
        ax.set_ylabel("final return")
        ax.set_title(f"{env}, {target:.0e} actions/s", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
