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
is over the device at T is shown as not fitting (its synthesized counts, a hollow marker beyond the
device's LUT line: a network too large for the part at T still has a measured cost to compare with),
and one whose design at T was not synthesized (its estimate alone was far over) is named beneath the
table. Only targets that some configuration fits are drawn.

A point is on the front when it fits and no other fitting configuration of its task reaches at least
its mean return with at most its LUTs (and is better in one). "Matches FP32": for a selection, its
record's verdict under its rule; for a search, the paper's sigma rule against the task's FP32
configuration.
"""
from __future__ import annotations

import dataclasses
import math
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
    fits: bool = True  # every seed's design fits the device at target_fps
    front: bool = False

    @property
    def label(self) -> str:
        return self.configuration.removeprefix(f"{self.env_id}/")


def points(data) -> list[Point]:
    """Every configuration's point at every target some configuration of its task fits, fitting or
    not, wherever each of its seeds has a synthesized design; [] without open-flow designs of the
    folder's trials."""
    matches = _matches(data)
    out = []
    for t, stats, target, rows in _designs(data):
        if not all(_synthesized(r) for r in rows):
            continue
        levels = [r["lut_levels"] for r in rows if r.get("lut_levels") is not None]
        out.append(Point(t.env_id, target, t.configuration, t.family, stats,
                         sum(r["lut"] for r in rows) / len(rows), sum(r["ff"] or 0 for r in rows) / len(rows),
                         max(levels) if levels else None, max(r["latency_cycles"] for r in rows),
                         matches(t.configuration, stats, data.fp32[t.env_id]), all(r["fits"] for r in rows)))
    return _with_front(out)


def not_synthesized(data) -> list[tuple[str, float, str, str]]:
    """(task, target, configuration, why) for each configuration with a seed whose design at a drawn
    target was not synthesized (the flow's estimate alone put it over the device)."""
    return [(t.env_id, target, t.configuration, next(r["note"] for r in rows if not _synthesized(r)))
            for t, _, target, rows in _designs(data) if not all(_synthesized(r) for r in rows)]


def _designs(data):
    """(first trial, stats, target, every seed's open-flow row) per quantized configuration and
    target that some design of the folder fits, where every seed has a row."""
    hw = data.hw or {}
    run_of = hw.get("runs", {})
    designs = {(run_of[r["policy"]], r["target_fps"]): r for r in hw.get("rows", [])
               if r["flow"] == FLOW and r["policy"] in run_of}
    targets = sorted({target for (_, target), r in designs.items() if r["fits"]})
    for t, stats in results.groups([t for t in data.trials if not t.fp32]):
        group = [x for x in data.trials if x.configuration == t.configuration]
        for target in targets:
            rows = [designs.get((x.run_id, target)) for x in group]
            if None not in rows:
                yield t, stats, target, rows


def _synthesized(row: dict) -> bool:
    return isinstance(row.get("lut"), (int, float)) and not math.isnan(row["lut"])


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
        return any(q.fits and q.env_id == p.env_id and q.target_fps == p.target_fps and q.lut <= p.lut
                   and q.stats.mean >= p.stats.mean and (q.lut < p.lut or q.stats.mean > p.stats.mean) for q in pts)

    return [dataclasses.replace(p, front=p.fits and not dominated(p)) for p in pts]


def table(data) -> list[str]:
    """Markdown: per task and target, the configurations by LUTs, then those not synthesized."""
    pts, missing, d = points(data), not_synthesized(data), _device(data)
    device = f"{d['part']} ({d['lut']:,} LUT)" if "part" in d else "the device"
    lines = []
    for env, target in sorted({(p.env_id, p.target_fps) for p in pts}):
        lines += [f"### {env} at {target:.0e} actions/s (FP32: {data.fp32[env]})", "",
                  f"| configuration | family | return | LUT | FF | LUT levels | latency (cycles) | fits {device} | "
                  "matches FP32 | front |", "|---|---|---:|---:|---:|---:|---:|---|---|---|"]
        for p in sorted((p for p in pts if (p.env_id, p.target_fps) == (env, target)), key=lambda p: (p.lut, p.label)):
            levels = "-" if p.lut_levels is None else str(p.lut_levels)
            lines.append(f"| {p.label} | {p.family} | {p.stats} | {p.lut:,.0f} | {p.ff:,.0f} | {levels} | "
                         f"{p.latency_cycles} | {'yes' if p.fits else 'no'} | {'yes' if p.matches_fp32 else 'no'} | "
                         f"{'*' if p.front else ''} |")
        lines.append("")
        lines += [f"Not synthesized at this target: {c.removeprefix(env + '/')} "
                  f"({why.removeprefix('not synthesized: ')})." for e, t, c, why in missing
                  if (e, t) == (env, target)]
        lines += [""] if lines[-1] else []
    return lines


def _device(data) -> dict:
    """hw.json's device (part, lut, ...); {} without one."""
    return (data.hw or {}).get("device") or {}


MARKERS = {"mlp": ("o", "C0", "QAT network"), "lut": ("^", "C1", "logic circuit (LUT)")}


def figure(data, path: Path) -> bool:
    """Return against LUTs, one panel per task (columns) and target (rows); False when there is nothing to draw."""
    pts = points(data)
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({p.env_id for p in pts})
    targets = sorted({p.target_fps for p in pts})
    device_lut = _device(data).get("lut")
    fig, axes = plt.subplots(len(targets), len(envs), figsize=(5.5 * len(envs), 4.2 * len(targets)), squeeze=False)
    for (i, target), (j, env) in ((a, b) for a in enumerate(targets) for b in enumerate(envs)):
        ax = axes[i][j]
        f = data.fp32[env]
        ax.axhspan(f.mean - f.std, f.mean + f.std, color="0.85", label="FP32 mean +- std")
        ax.axhline(f.mean, color="0.5", lw=1)
        here = [p for p in pts if (p.env_id, p.target_fps) == (env, target)]
        for family, (marker, colour, name) in MARKERS.items():
            for fits, suffix in ((True, ""), (False, ", over the device")):
                fam = [p for p in here if p.family == family and p.fits == fits]
                if fam:
                    ax.errorbar([p.lut for p in fam], [p.stats.mean for p in fam], yerr=[p.stats.std for p in fam],
                                fmt=marker, color=colour, mfc=colour if fits else "none", ms=7, capsize=3,
                                label=name + suffix)
        if device_lut and any(not p.fits for p in here):
            ax.axvline(device_lut, color="C3", ls=":", lw=1, label=f"the device's {device_lut:,} LUTs")
        front = sorted((p for p in here if p.front), key=lambda p: p.lut)
        # a step: between two front points, the return the cheaper one already gives
        ax.step([p.lut for p in front], [p.stats.mean for p in front], "k--", where="post", lw=1, label="Pareto front")
        for p in here:
            ax.annotate(p.label, (p.lut, p.stats.mean), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.margins(x=0.25)  # room for the rightmost label
        ax.set_xlabel("LUTs (yosys, XC7A15T, before place-and-route)")
        ax.set_ylabel("final return")
        ax.set_title(f"{env}, {target:.0e} actions/s", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
