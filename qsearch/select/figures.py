"""The report's figures (matplotlib, Agg), one function per figure, each from plain data.

Every figure has one panel per environment; the sweeps (Figures 1, 4, 5) carry the FP32 mean and
its one-std band for reference, as in the paper. A function returns False and writes nothing when
its data holds no curve to draw.

What a figure may show is decided by small rules, pure functions tested on their own
(tests/test_report.py), so a report is readable whatever its data:

- `is_curve`: a series needs two or more values along the axis; a panel needs a series. A single
  point under a title about a trend shows no trend.
- `use_points`: with fewer than FEW_SEEDS seeds (models), each seed is a dot and the mean a bar,
  with no line and no band: a line between means of 2-3 seeds draws their noise as a trend.
- `band_visible`: when the FP32 band is under 1% of the panel's axis, a zoom panel below shows
  return - FP32 mean around it, where the band is at least 9% of the axis (`zoom_ylim`).
- `noise_axis`: returns spanning a decade or more are drawn on a log axis, so the levels where
  every policy has collapsed stay apart.
- `dodge`: point series at the same x are set apart, so one's seeds do not hide another's.

Legends name configurations ("core 2b, width 32, input 4b"; the caller names the noise curves) and
sit below their panel, where they cover no data.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from qsearch.select.results import Stats, Trial, groups  # noqa: E402

SCOPES = ("all", "input", "output", "core")
SCOPE_LABELS = {"all": "all parts at x bits", "input": "input at x bits, core and output 8b",
                "output": "output at x bits, input and core 8b", "core": "core at x bits, input and output 8b"}
FEW_SEEDS = 5
"""below this many seeds, points instead of mean and std: the std of n seeds is itself uncertain by
about 1/sqrt(2(n-1)) of its value, 41% at 4 seeds"""
BAND_MIN_FRACTION = 0.01
"""an FP32 band under this fraction of the axis is a line (IDP: 3 of 9,000 is 0.03%)"""
ZOOM_REACH = 10
"""the zoom panel shows means up to this many FP32 stds from the FP32 mean"""
LOG_RATIO = 10
"""noise curves whose returns span this factor or more get a log axis"""
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


@dataclass(frozen=True)
class Series:
    """One configuration's (or scope's) values along a figure's axis: per x, one value per seed or model."""

    label: str
    xs: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]

    @property
    def means(self) -> np.ndarray:
        return np.array([np.mean(v) for v in self.values])

    @property
    def stds(self) -> np.ndarray:
        return np.array([np.std(v) for v in self.values])

    @property
    def n(self) -> int:
        """the fewest seeds at any x"""
        return min(len(v) for v in self.values)

    def drawn(self) -> list[float]:
        """The y values drawn: the means, and each seed's value where seeds are points."""
        return list(self.means) + ([x for v in self.values for x in v] if use_points(self.n) else [])

    def extent(self) -> tuple[float, float]:
        """What is drawn of it on the y axis: the seeds' values (points) or mean +- std (a line)."""
        if use_points(self.n):
            flat = [x for v in self.values for x in v]
            return min(flat), max(flat)
        return float((self.means - self.stds).min()), float((self.means + self.stds).max())


def series_of(label: str, points: list[tuple[float, Stats]]) -> Series:
    pts = sorted(points, key=lambda p: p[0])
    return Series(label, tuple(x for x, _ in pts), tuple(tuple(s.returns) for _, s in pts))


# ---- the rules ----------------------------------------------------------------------------------

def is_curve(xs) -> bool:
    """A series is drawn only with two or more distinct values along the axis."""
    return len(set(xs)) >= 2


def use_points(n_seeds: int) -> bool:
    """Dots per seed and a bar for the mean, no line and no band, below FEW_SEEDS seeds."""
    return n_seeds < FEW_SEEDS


def band_visible(band: tuple[float, float], ylim: tuple[float, float]) -> bool:
    """Whether the band (low, high) takes at least BAND_MIN_FRACTION of the axis ylim."""
    return (band[1] - band[0]) >= BAND_MIN_FRACTION * (ylim[1] - ylim[0])


def padded(lo: float, hi: float) -> tuple[float, float]:
    """The axis matplotlib draws around data from lo to hi (its default 5% margins)."""
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo), 1.0) * 0.05
    return lo - pad, hi + pad


def needs_zoom(series: list[Series], fp32: Stats) -> bool:
    """Whether a panel of these series over the FP32 band needs the zoom: its band is not visible on
    the axis that holds everything drawn."""
    band = (fp32.mean - fp32.std, fp32.mean + fp32.std)
    lo = min([s.extent()[0] for s in series] + [band[0]])
    hi = max([s.extent()[1] for s in series] + [band[1]])
    return not band_visible(band, padded(lo, hi))


def zoom_ylim(fp32: Stats, values) -> tuple[float, float]:
    """The zoom panel's y range, in return - FP32 mean: the band with two stds either side, widened to
    the values (means, seeds) within ZOOM_REACH stds, so the band is at least 9% of the axis. FP32 with no spread
    (every seed at a ceiling) gets a band of 0.1% of its mean for scale."""
    half = fp32.std if fp32.std > 0 else 1e-3 * max(abs(fp32.mean), 1.0)
    near = [v - fp32.mean for v in values if abs(v - fp32.mean) <= ZOOM_REACH * half]
    lo, hi = min([-2 * half] + near), max([2 * half] + near)
    return lo - 0.5 * half, hi + 0.5 * half


def noise_axis(values) -> tuple[str, float | None]:
    """The y scale of a noise panel, from every value it draws: ("linear", None) when they span less
    than LOG_RATIO; ("log", None) when they are positive and span more (on a linear axis, returns a
    decade below the largest lie in the panel's bottom tenth, where their differences vanish); else
    ("symlog", linthresh), linear within the smallest magnitude's decade and logarithmic beyond."""
    v = np.asarray(list(values), float)
    mags = np.abs(v[v != 0])
    if len(mags) == 0 or mags.max() < LOG_RATIO * mags.min():
        return "linear", None
    if (v > 0).all():
        return "log", None
    return "symlog", float(10 ** math.floor(math.log10(mags.min())))


def dodge(xs, i: int, n: int, log2: bool = False) -> np.ndarray:
    """xs shifted for the i-th of n point series, so seeds of series at the same x do not overlap:
    by a small part of the closest spacing (in log2 units on a log axis)."""
    x = np.asarray(xs, float)
    u = np.log2(x) if log2 else x
    steps = np.diff(np.unique(u))
    gap = 0.12 * (steps.min() if len(steps) else 1.0)  # about a bar's width at the figures' sizes
    shift = gap * (i - (n - 1) / 2)
    return 2 ** (u + shift) if log2 else u + shift


# ---- drawing ------------------------------------------------------------------------------------

def _draw(ax, s: Series, i: int, n: int, log2=False, shift=0.0) -> None:
    """One series: dots per seed and a bar per mean (few seeds), or mean line and +- std band."""
    color = COLORS[i % len(COLORS)]
    m = s.means - shift
    if use_points(s.n):
        xs = dodge(s.xs, i, n, log2)
        for x, vals in zip(xs, s.values):
            ax.scatter([x] * len(vals), np.asarray(vals) - shift, s=14, color=color, alpha=0.6, edgecolors="none")
        ax.plot(xs, m, ls="none", marker="_", ms=10, mew=2.2, color=color, label=f"{s.label} ({s.n} seeds)")
        return
    ax.plot(s.xs, m, marker="o", color=color, label=f"{s.label} ({s.n} seeds)")
    ax.fill_between(s.xs, m - s.stds, m + s.stds, color=color, alpha=0.2)


def _off_scale(ax, s: Series, i: int, n: int, log2: bool, shift: float) -> None:
    """Means outside the zoom: a triangle at the edge they lie beyond."""
    lo, hi = ax.get_ylim()
    xs = dodge(s.xs, i, n, log2) if use_points(s.n) else np.asarray(s.xs, float)
    m = s.means - shift
    color = COLORS[i % len(COLORS)]
    for edge, mask, marker in ((lo, m < lo, "v"), (hi, m > hi, "^")):
        if mask.any():
            ax.plot(xs[mask], [edge] * int(mask.sum()), ls="none", marker=marker, color=color, clip_on=False)


def _fp32_band(ax, fp32: Stats, width: int | None, shift=0.0) -> None:
    name = "FP32" if width is None else f"FP32, width {width}"
    ax.axhline(fp32.mean - shift, color="black", lw=1.2, label=f"{name} (band: +- 1 std)")
    ax.axhspan(fp32.mean - fp32.std - shift, fp32.mean + fp32.std - shift, color="black", alpha=0.15)


def _not_trained(ax, xs) -> None:
    """Values a lazy selection did not evaluate (a smaller one matched): grey crosses on the axis."""
    if xs:
        lo = ax.get_ylim()[0]
        ax.plot(sorted(xs), [lo] * len(xs), "x", color="grey", clip_on=False, label="not evaluated (a smaller value matched)")


def _integer_ticks(ax, values) -> None:
    """Bit widths and layer widths are integers: tick exactly the values trained."""
    ticks = sorted(set(values))
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.minorticks_off()


def _legend(ax, under=None) -> None:
    """ax's legend below `under` (default ax), past its tick labels and x label: inside, it would
    cover data wherever the data fill the panel (IDP's noise curves start in every corner)."""
    handles, labels = ax.get_legend_handles_labels()
    (under or ax).legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0),
                         borderaxespad=4.5, frameon=False)


def _how(series) -> str:
    """The title's note on what dots, bars and bands are."""
    points = [use_points(s.n) for s in series]
    notes = ["dots: seeds, bar: their mean"] * any(points) + ["band: +- 1 std over seeds"] * (not all(points))
    return "; ".join(notes)


def _save(fig, path: Path, title: str) -> bool:
    # wrapped to the figure's width (about 12 characters of 10-point text per inch): a one-panel
    # figure is too narrow for the longer titles, and matplotlib does not wrap a suptitle
    fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() * 12)), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _sweep_figure(curves: dict[str, list[Series]], fp32: dict[str, Stats], fp32_width: dict[str, int], path: Path,
                  xlabel: str, title: str, log2=False, skipped=None) -> bool:
    """Figures 1, 4 and 5: per environment, the series that are curves over the FP32 band, and a zoom
    panel below where the band is too thin to see on the panel's scale."""
    skipped = skipped or {}
    curves = {e: [s for s in ss if is_curve(s.xs)] for e, ss in curves.items()}
    curves = {e: ss for e, ss in curves.items() if ss}
    if not curves:
        return False
    envs = sorted(curves)
    zoom = {env: needs_zoom(curves[env], fp32[env]) for env in envs}
    rows = 2 if any(zoom.values()) else 1
    fig, axes = plt.subplots(rows, len(envs), figsize=(max(6.4, 4.8 * len(envs)), 3.8 + 2.2 * (rows - 1)),
                             squeeze=False, height_ratios=[2, 1][:rows], sharex="col")
    for col, env in enumerate(envs):
        ax, series = axes[0][col], curves[env]
        _fp32_band(ax, fp32[env], fp32_width.get(env))
        for i, s in enumerate(series):
            _draw(ax, s, i, len(series), log2)
        _not_trained(ax, skipped.get(env, []))
        if log2:
            ax.set_xscale("log", base=2)
        _integer_ticks(ax, [x for s in series for x in s.xs] + skipped.get(env, []))
        ax.set(title=env, ylabel="return")
        if rows == 2 and not zoom[env]:
            axes[1][col].set_visible(False)
            ax.set_xlabel(xlabel)
            ax.tick_params(labelbottom=True)
            _legend(ax)
        elif rows == 2:
            z, f = axes[1][col], fp32[env]
            _fp32_band(z, f, None, shift=f.mean)
            for i, s in enumerate(series):
                _draw(z, s, i, len(series), log2, shift=f.mean)
            z.set_ylim(*zoom_ylim(f, [v for s in series for v in s.drawn()]))
            for i, s in enumerate(series):
                _off_scale(z, s, i, len(series), log2, f.mean)
            z.set(xlabel=xlabel, ylabel="return - FP32 mean")
            z.set_title(f"near FP32 ({f.mean:,.1f} +- {f.std:,.1f}); triangles: means beyond", fontsize=8)
            _legend(ax, under=z)
        else:
            ax.set_xlabel(xlabel)
            _legend(ax)
    return _save(fig, path, f"{title} ({_how([s for ss in curves.values() for s in ss])})")


def scope_of(t: Trial) -> list[tuple[str, int]]:
    """The paper's scopes (Figure 1) a configuration lies on, with its bit width there."""
    i, w, a, o = (t.bits(p) for p in ("in", "weight", "act", "out"))
    if i is None or w != a:
        return []
    out = []
    if i == w == o:
        out.append(("all", w))
    if w == o == 8:
        out.append(("input", i))
    if i == w == 8:
        out.append(("output", o))
    if i == o == 8:
        out.append(("core", w))
    return out


def bitwidth(trials: list[Trial], fp32: dict[str, Stats], fp32_width: dict[str, int], path: Path,
             skipped: dict | None = None) -> bool:
    """Figure 1: return vs bit width per scope, at the FP32 baseline's width. skipped: env -> core bits a
    lazy selection did not evaluate."""
    points = {}  # env -> scope -> [(bits, stats)]
    for t, s in groups(trials):
        if t.fp32 or t.width != fp32_width.get(t.env_id):
            continue
        for scope, bits in scope_of(t):
            points.setdefault(t.env_id, {}).setdefault(scope, []).append((bits, s))
    curves = {env: [series_of(f"{SCOPE_LABELS[scope]}, width {fp32_width[env]}", by[scope])
                    for scope in SCOPES if scope in by] for env, by in points.items()}
    return _sweep_figure(curves, fp32, fp32_width, path, "bit width",
                         "Return vs bit width per quantization scope", skipped=skipped)


def width(trials: list[Trial], fp32: dict[str, Stats], fp32_width: dict[str, int], path: Path,
          skipped: dict | None = None) -> bool:
    """Figure 4: return vs hidden width, one curve per core bit width (input and output at 8 bits).
    skipped: env -> widths a lazy selection did not evaluate."""
    curves = _curves(trials, lambda t: (f"core {t.bits('weight')}b, input 8b", t.width)
                     if t.bits("in") == t.bits("out") == 8 and t.bits("weight") == t.bits("act") else None)
    return _sweep_figure(curves, fp32, fp32_width, path, "hidden width", "Return vs hidden width", log2=True,
                         skipped=skipped)


def input_bits(trials: list[Trial], fp32: dict[str, Stats], fp32_width: dict[str, int], path: Path,
               skipped: dict | None = None) -> bool:
    """Figure 5: return vs input bits, one curve per (core bits, width), output at 8 bits.
    skipped: env -> input bits a lazy selection did not evaluate."""
    curves = _curves(trials, lambda t: (f"core {t.bits('weight')}b, width {t.width}", t.bits("in"))
                     if t.bits("out") == 8 and t.bits("weight") == t.bits("act") else None)
    return _sweep_figure(curves, fp32, fp32_width, path, "input bits", "Return vs input bit width", skipped=skipped)


def _curves(trials, key) -> dict[str, list[Series]]:
    """env -> one series per label key(trial) gives, along the x it gives (None: not on this figure)."""
    points = {}  # env -> label -> [(x, stats)]
    for t, s in groups(trials):
        k = None if t.fp32 else key(t)
        if k is not None:
            points.setdefault(t.env_id, {}).setdefault(k[0], []).append((k[1], s))
    return {env: [series_of(label, pts) for label, pts in sorted(by.items())] for env, by in points.items()}


def training(histories: dict[str, dict[str, list[dict[int, float]]]], path: Path) -> bool:
    """Figure 2: evaluation return over training steps; histories: env -> label -> per-run {step: return}.
    With few seeds each run is its own thin line: a band of 2 seeds' std is no estimate of anything."""
    envs = sorted(e for e, h in histories.items() if any(h.values()))
    if not envs:
        return False
    fig, axes = plt.subplots(1, len(envs), figsize=(max(6.4, 4.8 * len(envs)), 3.8), squeeze=False)
    few = False
    for env, ax in zip(envs, axes[0]):
        for i, (label, runs) in enumerate(histories[env].items()):
            steps = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
            if not steps:
                continue
            color, vals = COLORS[i % len(COLORS)], np.array([[r[s] for s in steps] for r in runs])
            if use_points(len(runs)):
                few = True
                for k, v in enumerate(vals):
                    ax.plot(steps, v, lw=1, marker=".", color=color,
                            label=f"{label} ({len(runs)} seeds)" if k == 0 else None)
            else:
                ax.plot(steps, vals.mean(0), marker=".", color=color, label=f"{label} ({len(runs)} seeds)")
                ax.fill_between(steps, vals.mean(0) - vals.std(0), vals.mean(0) + vals.std(0), color=color, alpha=0.2)
        ax.set(title=env, xlabel="environment steps", ylabel="evaluation return")
        _legend(ax)
    how = "one line per seed" if few else "band: +- 1 std over seeds"
    return _save(fig, path, f"Training curves: selected vs FP32 ({how})")


def noise(noise_data: dict, path: Path) -> bool:
    """Figure 3: return vs observation noise sigma; noise_data: env -> label -> {sigma, per_model, ...},
    labels naming configurations, in the order to draw them."""
    envs = sorted(e for e, c in noise_data.items() if c)
    if not envs:
        return False
    fig, axes = plt.subplots(1, len(envs), figsize=(max(6.4, 4.8 * len(envs)), 4.0), squeeze=False)
    drawn = []
    for env, ax in zip(envs, axes[0]):
        series = [Series(label, tuple(c["sigma"]), tuple(zip(*c["per_model"])))
                  for label, c in noise_data[env].items() if c["per_model"]]
        for i, s in enumerate(series):
            _draw(ax, s, i, len(series))
        scale, linthresh = noise_axis([v for s in series for vals in s.values for v in vals])
        if scale == "symlog":
            ax.set_yscale("symlog", linthresh=linthresh)
        elif scale == "log":
            ax.set_yscale("log")
        ax.set_xticks(sorted({x for s in series for x in s.xs}))
        ax.set(title=env, xlabel="noise sigma (normalized observation)",
               ylabel="return" + (" (log scale)" if scale != "linear" else ""))
        _legend(ax)
        drawn += series
    return _save(fig, path, f"Robustness to Gaussian observation noise, one model per seed ({_how(drawn)})")
