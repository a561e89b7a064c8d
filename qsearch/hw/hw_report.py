"""The hardware report: a Table-3-like table (text, CSV, Markdown) and a figure of latency and LUTs
against the throughput target, for one flow or both side by side. Written to a temporary folder and
renamed into place. (The selection's report, Table 1 and its figures, is qsearch/select/report.py.)"""
from __future__ import annotations

import csv
import io
import math
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch.hw import open_steps, power, sweep
from qsearch.hw.config import HwConfig
from qsearch.hw.device import Device
from qsearch.hw.sweep import Row, SweepConfig

# "(fit)": the figure is the linear fit to the paper's Table 3 (qsearch/hw/power.py), not a count or a
# measurement; the notes say so (FIT_NOTE), and hw.csv / hw.json name the fields *_fit.
COLUMNS = ["policy", "flow", "target", "design", "LUT", "FF", "CARRY4", "BRAM18", "DSP", "latency", "LUT levels",
           "power W (fit)", "actions/s", "J/action (fit)", "fits"]
FLOW_LABEL = {"finn": "FINN estimate", "open": "yosys, before P&R"}


def _n(v, fmt: str = ",.0f") -> str:
    """A figure, or '-' when the flow gives none (None) or the design was not synthesized (NaN)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _cells(r: Row, chosen: bool, nowhere: bool = False) -> list[str]:
    """A row's cells; `nowhere`: the row stands for a policy that fits at no target (its lowest target's)."""
    fits = "yes" if r.fits else "no (" + ", ".join(r.over) + ")"
    if nowhere:
        fits = "NO TARGET FITS (lowest shown: over in " + ", ".join(r.over) + ")"
    return [r.policy + (" *" if chosen else ""), FLOW_LABEL.get(r.flow, r.flow), f"{r.target_fps:.0e}", r.arch,
            _n(r.lut), _n(r.ff), _n(r.carry4), _n(r.bram18, "g"), _n(r.dsp, "g"), _latency(r),
            _n(r.lut_levels), _fit(r.power_w_fit, ".2f"), f"{r.actions_per_s:.1e}", _fit(r.energy_j_fit, ".1e"), fits]


def _fit(v, fmt: str) -> str:
    """A figure of the power fit, or 'n/a' where the fit is not applied."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def fit_note() -> str:
    """What the '(fit)' columns are."""
    return ("power W (fit) and J/action (fit) are not counts or measurements: they are a linear fit to the paper's "
            "Table 3 (its five designs' XPE power on the XC7A15T-1 at 100 MHz; qsearch/hw/power.py) evaluated on "
            "the row's LUT, BRAM18 and DSP, an extrapolation beyond that table's 1.9k-4.3k LUT; J/action (fit) = "
            "power W (fit) / actions/s. n/a: the fit is not applied (open-flow rows). hw.csv and hw.json name these "
            "fields power_w_fit and energy_j_fit, with power_source.")


def _us(us: float) -> str:
    return f"{us:.2f} us" if us < 10 else f"{us:.1f} us"


def _latency(r: Row) -> str:
    return _us(r.latency_us) + ("" if r.latency_cycles is None else f" ({r.latency_cycles:,} cyc)")


def is_chosen(r: Row, chosen: dict) -> bool:
    return chosen.get((r.policy, r.flow)) is r


def table(rows: list[Row], chosen: dict[tuple[str, str], Row]) -> str:
    """A plain-text table; the chosen (highest fitting) target of each policy and flow is marked with *."""
    body = [_cells(r, is_chosen(r, chosen)) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(COLUMNS, *body)]
    line = lambda cells: "  ".join(c.rjust(w) if i > 3 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *map(line, body)])


def notes(cfg: HwConfig, flows: list[str] = ("finn",), rows: list[Row] = (), chosen: dict | None = None) -> list[str]:
    """What the figures are, for the flows the rows came from; first, the policies (of `rows`, with
    `chosen`) that fit the device at no target."""
    dev = cfg.device
    pad = f"observation and action dimensions padded to multiples of {cfg.pad}" if cfg.pad else "no padding"
    nowhere = sweep.fits_nowhere(list(rows), chosen or {})
    out = [f"FITS THE DEVICE AT NO TARGET (no chosen design; the other policies' results stand): "
           + "; ".join(map(sweep.nowhere_line, nowhere.values())) + "."] if nowhere else []
    out += [f"Device {dev.part}: {dev.lut:,} LUT, {dev.ff:,} FF, {dev.bram18} BRAM18, {dev.dsp} DSP; clock {cfg.clock_ns:g} ns; "
           f"{pad}" + (f"; mvau_wwidth_max {cfg.mvau_wwidth_max}." if "finn" in flows else ".")]
    if "finn" in flows:
        out += [
            "FINN estimate rows: LUT, BRAM18, DSP, cycles, latency and actions/s are FINN's estimates (finn-plus "
            "1.6.1), not post-synthesis results; FINN gives no FF estimate ('-'). With --synth the chosen rows hold "
            "Vivado's post-synthesis figures instead (the CSV's source column says which).",
        ]
    if "open" in flows:
        out += [
            "Open-flow rows (yosys): qsearch's own RTL of the integer model, each design checked bit for bit in "
            f"verilator against the integer engine ({open_steps.VECTORS:,} observations, fewer for designs slower than "
            f"{open_steps.SIM_CYCLES:,} cycles in all) before its figures are reported, then synthesized with yosys "
            "synth_xilinx -family xc7. " + (
                "The synthesized netlist was simulated too (--check-netlist: yosys' models of the Xilinx cells, the "
                "same observations) and matched, so the counts are of a checked netlist. " if cfg.check_netlist else
                "The synthesized netlist the counts are of was NOT simulated (--check-netlist does that, at "
                f"{open_steps.NETLIST_COST}). ") +
            "These are yosys cell counts BEFORE place-and-route, and timing is NOT closed: "
            "the only timing signal is the LUT levels of the longest register-to-register path. Latency and "
            "actions/s are exact cycle counts (checked in simulation) at the clock. Power is not estimated (n/a).",
        ]
    out += [fit_note(),
            "The float input quantization (host) and the output tanh lookup are not part of the hardware figures.",
            "* marks each policy's highest throughput target that fits the device" + (", per flow." if len(flows) > 1 else ".")]
    return out


def flows_of(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(r.flow for r in rows))


def chosen_rows(rows: list[Row], chosen: dict[tuple[str, str], Row]) -> list[tuple[Row, bool]]:
    """Per (policy, flow) in the sweep's order: its chosen row, or its lowest target's row when it fits at
    no target (then True)."""
    nowhere = sweep.fits_nowhere(rows, chosen)
    return [(chosen[k], False) if k in chosen else (nowhere[k], True)
            for k in dict.fromkeys((r.policy, r.flow) for r in rows)]


def markdown(rows: list[Row], chosen: dict[tuple[str, str], Row], cfg: HwConfig) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    def tab(rs):
        return head + "".join("| " + " | ".join(_cells(r, is_chosen(r, chosen), nowhere)) + " |\n" for r, nowhere in rs)
    title = "Hardware estimates" if flows_of(rows) == ["finn"] else "Hardware: FINN estimates and open synthesis"
    return (f"# {title}\n\n## Chosen designs (highest fitting target)\n\n" + tab(chosen_rows(rows, chosen))
            + "\n## Sweep\n\n" + tab([(r, False) for r in rows]) + "\n"
            + "".join(f"- {n}\n" for n in notes(cfg, flows_of(rows), rows, chosen)))


def csv_text(rows: list[Row], chosen: dict[tuple[str, str], Row]) -> str:
    out = io.StringIO()
    fields = ["policy", "flow", "target_fps", "arch", "lut", "ff", "carry4", "bram18", "dsp", "max_cycles",
              "latency_cycles", "latency_us", "actions_per_s", "lut_levels", "power_w_fit", "energy_j_fit", "power_source",
              "fits", "over", "pad", "source", "netlist_check", "chosen"]
    w = csv.writer(out)
    w.writerow(fields)
    for r in rows:
        d = asdict(r)
        d["over"] = " ".join(r.over)
        d["chosen"] = is_chosen(r, chosen)
        w.writerow(["" if d[f] is None or (isinstance(d[f], float) and math.isnan(d[f])) else d[f] for f in fields])
    return out.getvalue()


def figure(rows: list[Row], dev: Device, path: Path) -> Path:
    """Latency and LUTs against the target throughput, one line per policy and flow (FINN's solid, the
    open flow's dashed); open markers do not fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_lut) = plt.subplots(1, 2, figsize=(11, 4.2))
    flows = flows_of(rows)
    colors = {}
    for name, flow in dict.fromkeys((r.policy, r.flow) for r in rows):
        mine = sorted((r for r in rows if (r.policy, r.flow) == (name, flow)), key=lambda r: r.target_fps)
        x = [r.target_fps for r in mine]
        style = "--" if flow == "open" else "-"
        label = name if len(flows) == 1 else f"{name} ({FLOW_LABEL.get(flow, flow)})"
        line, = ax_lat.plot(x, [r.latency_us for r in mine], style, label=label, color=colors.get(name))
        colors[name] = line.get_color()
        ax_lut.plot(x, [r.lut for r in mine], style, color=line.get_color())
        for ax, ys in ((ax_lat, [r.latency_us for r in mine]), (ax_lut, [r.lut for r in mine])):
            ax.scatter([a for a, r in zip(x, mine) if r.fits], [y for y, r in zip(ys, mine) if r.fits],
                       color=line.get_color(), zorder=3)
            ax.scatter([a for a, r in zip(x, mine) if not r.fits], [y for y, r in zip(ys, mine) if not r.fits],
                       facecolors="white", edgecolors=line.get_color(), zorder=3)
    ax_lut.axhline(dev.lut, color="k", ls="--", lw=1, label=f"{dev.part} LUT")
    what = " / ".join(FLOW_LABEL.get(f, f) for f in flows)
    for ax, label in ((ax_lat, f"latency [us] ({what})"), (ax_lut, f"LUT ({what})")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("target throughput [actions/s]")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_lat.legend(fontsize=7)
    ax_lut.legend(fontsize=7, loc="upper left")
    title = {("finn",): "FINN folding sweep", ("open",): "Open synthesis sweep (yosys cell counts before place-and-route, "
             "timing not closed)"}.get(tuple(flows), "FINN estimates (solid) and open synthesis (dashed; yosys, before "
                                                    "place-and-route, timing not closed)")
    fig.suptitle(f"{title}\nfilled: fits the device, open: does not", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(rows: list[Row], chosen: dict[tuple[str, str], Row], cfg: SweepConfig, out: Path,
          runs: dict[str, str] | None = None) -> Path:
    """hw.csv, hw.md, hw.json (every row with per-layer figures and folding; `runs`, policy -> the MLflow
    run it came from, lets a report join rows to trials) and hw.png in folder `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QsearchError(f"{out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "hw.csv").write_text(csv_text(rows, chosen))
        (tmp / "hw.md").write_text(markdown(rows, chosen, cfg.hw))
        (tmp / "hw.json").write_text(json.dumps({"config": cfg.record(), "device": asdict(cfg.hw.device),
                                                 "rows": [asdict(r) for r in rows], "runs": runs or {},
                                                 "notes": notes(cfg.hw, flows_of(rows), rows, chosen),
                                                 # flow -> policy -> chosen target; null: fits at no target
                                                 "chosen": {f: {p: chosen[p, f].target_fps if (p, f) in chosen else None
                                                                for p, f2 in dict.fromkeys((r.policy, r.flow) for r in rows)
                                                                if f2 == f}
                                                            for f in flows_of(rows)}}, indent=1))
        figure(rows, cfg.hw.device, tmp / "hw.png")
        out.mkdir(exist_ok=True)
        for f in tmp.iterdir():
            f.replace(out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
