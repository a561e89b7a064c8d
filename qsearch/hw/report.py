"""The hardware report: a Table-3-like table (text, CSV, Markdown) and a figure of latency and LUTs
against the throughput target. Written to a temporary folder and renamed into place."""
from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch.hw import power
from qsearch.hw.config import HwConfig
from qsearch.hw.device import Device
from qsearch.hw.sweep import Row, SweepConfig

COLUMNS = ["policy", "target", "LUT", "FF", "BRAM18", "DSP", "latency", "power", "actions/s", "J/action", "fits"]


def _cells(r: Row, chosen: bool) -> list[str]:
    return [r.policy + (" *" if chosen else ""), f"{r.target_fps:.0e}", f"{r.lut:,.0f}",
            "-" if r.ff is None else f"{r.ff:,.0f}", f"{r.bram18:g}", f"{r.dsp:g}", _us(r.latency_us),
            f"{r.power_w:.2f} W", f"{r.actions_per_s:.1e}", f"{r.energy_j:.1e}",
            "yes" if r.fits else "no (" + ", ".join(r.over) + ")"]


def _us(us: float) -> str:
    return f"{us:.2f} us" if us < 10 else f"{us:.1f} us"


def table(rows: list[Row], chosen: dict[str, Row]) -> str:
    """A plain-text table; the chosen (highest fitting) target of each policy is marked with *."""
    body = [_cells(r, chosen.get(r.policy) is r) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(COLUMNS, *body)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *map(line, body)])


def notes(cfg: HwConfig) -> list[str]:
    dev = cfg.device
    pad = f"observation and action dimensions padded to multiples of {cfg.pad}" if cfg.pad else "no padding"
    return [
        f"Device {dev.part}: {dev.lut:,} LUT, {dev.ff:,} FF, {dev.bram18} BRAM18, {dev.dsp} DSP; clock {cfg.clock_ns:g} ns; "
        f"{pad}; mvau_wwidth_max {cfg.mvau_wwidth_max}.",
        "LUT, BRAM18, DSP, cycles, latency and actions/s are FINN's estimates (finn-plus 1.6.1), not "
        "post-synthesis results; FINN gives no FF estimate ('-'). With --synth the chosen rows hold Vivado's "
        "post-synthesis figures instead (the CSV's source column says which).",
        f"Power and energy per action are estimates: {power.SOURCE}; energy = power / FINN's estimated throughput.",
        "The float input quantization (host) and the output tanh lookup are not part of the hardware figures.",
        "* marks each policy's highest throughput target that fits the device.",
    ]


def markdown(rows: list[Row], chosen: dict[str, Row], cfg: HwConfig) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    def tab(rs):
        return head + "".join("| " + " | ".join(_cells(r, chosen.get(r.policy) is r)) + " |\n" for r in rs)
    return ("# Hardware estimates\n\n## Chosen designs (highest fitting target)\n\n" + tab(list(chosen.values()))
            + "\n## Sweep\n\n" + tab(rows) + "\n" + "".join(f"- {n}\n" for n in notes(cfg)))


def csv_text(rows: list[Row], chosen: dict[str, Row]) -> str:
    out = io.StringIO()
    fields = ["policy", "target_fps", "lut", "ff", "bram18", "dsp", "max_cycles", "latency_us", "actions_per_s",
              "power_w", "energy_j", "fits", "over", "pad", "source", "chosen"]
    w = csv.writer(out)
    w.writerow(fields)
    for r in rows:
        d = asdict(r)
        d["over"] = " ".join(r.over)
        d["chosen"] = chosen.get(r.policy) is r
        w.writerow(["" if d[f] is None else d[f] for f in fields])
    return out.getvalue()


def figure(rows: list[Row], dev: Device, path: Path) -> Path:
    """Latency and LUTs against the target throughput, one line per policy; open markers do not fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_lut) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r.policy for r in rows):
        mine = sorted((r for r in rows if r.policy == name), key=lambda r: r.target_fps)
        x = [r.target_fps for r in mine]
        line, = ax_lat.plot(x, [r.latency_us for r in mine], "-", label=name)
        ax_lut.plot(x, [r.lut for r in mine], "-", color=line.get_color())
        for ax, ys in ((ax_lat, [r.latency_us for r in mine]), (ax_lut, [r.lut for r in mine])):
            ax.scatter([a for a, r in zip(x, mine) if r.fits], [y for y, r in zip(ys, mine) if r.fits],
                       color=line.get_color(), zorder=3)
            ax.scatter([a for a, r in zip(x, mine) if not r.fits], [y for y, r in zip(ys, mine) if not r.fits],
                       facecolors="white", edgecolors=line.get_color(), zorder=3)
    ax_lut.axhline(dev.lut, color="k", ls="--", lw=1, label=f"{dev.part} LUT")
    for ax, label in ((ax_lat, "latency [us] (FINN estimate)"), (ax_lut, "LUT (FINN estimate)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("target throughput [actions/s]")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_lat.legend(fontsize=7)
    ax_lut.legend(fontsize=7, loc="upper left")
    fig.suptitle("FINN folding sweep (filled: fits the device, open: does not)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(rows: list[Row], chosen: dict[str, Row], cfg: SweepConfig, out: Path) -> Path:
    """hw.csv, hw.md, hw.json (every row with per-layer figures and folding) and hw.png in folder `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QsearchError(f"{out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "hw.csv").write_text(csv_text(rows, chosen))
        (tmp / "hw.md").write_text(markdown(rows, chosen, cfg.hw))
        (tmp / "hw.json").write_text(json.dumps({"config": cfg.record(), "device": asdict(cfg.hw.device),
                                                 "rows": [asdict(r) for r in rows],
                                                 "chosen": {k: v.target_fps for k, v in chosen.items()}}, indent=1))
        figure(rows, cfg.hw.device, tmp / "hw.png")
        out.mkdir(exist_ok=True)
        for f in tmp.iterdir():
            f.replace(out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
