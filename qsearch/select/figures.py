"""The report's figures (matplotlib, Agg), one function per figure, each from plain data.

Every figure has one panel per environment with the FP32 mean and its one-std band for reference,
as in the paper. A function returns False and writes nothing when its data holds no curve to draw.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from qsearch.select.results import Stats, Trial, groups  # noqa: E402

SCOPES = ("all", "input", "output", "core")


def _panels(envs: list[str]):
    fig, axes = plt.subplots(1, len(envs), figsize=(max(6.4, 4.2 * len(envs)), 3.8), squeeze=False)
    return fig, dict(zip(envs, axes[0]))


def _fp32_band(ax, fp32: Stats) -> None:
    ax.axhline(fp32.mean, color="black", lw=1.2, label="FP32 (band: +- 1 std)")
    ax.axhspan(fp32.mean - fp32.std, fp32.mean + fp32.std, color="black", alpha=0.12)


def _line(ax, xs, means, stds, label, marker="o") -> None:
    """Means with a +- std band (error bars where there is a single point: a band needs two)."""
    m, sd = np.asarray(means, float), np.asarray(stds, float)
    if len(m) == 1:
        ax.errorbar(xs, m, yerr=sd, marker=marker, capsize=4, label=label)
        return
    (line,) = ax.plot(xs, m, marker=marker, label=label)
    ax.fill_between(xs, m - sd, m + sd, color=line.get_color(), alpha=0.2)


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


def _save(fig, path: Path, title: str) -> bool:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


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
    skipped = skipped or {}
    curves = {}  # env -> scope -> [(bits, stats)]
    for t, s in groups(trials):
        if t.fp32 or t.width != fp32_width.get(t.env_id):
            continue
        for scope, bits in scope_of(t):
            curves.setdefault(t.env_id, {}).setdefault(scope, []).append((bits, s))
    if not curves:
        return False
    fig, axes = _panels(sorted(curves))
    for env, ax in axes.items():
        _fp32_band(ax, fp32[env])
        for scope in SCOPES:
            pts = sorted(curves[env].get(scope, []), key=lambda p: p[0])
            if pts:
                _line(ax, [p[0] for p in pts], [p[1].mean for p in pts], [p[1].std for p in pts], scope)
        _not_trained(ax, skipped.get(env, []))
        _integer_ticks(ax, [b for pts in curves[env].values() for b, _ in pts] + skipped.get(env, []))
        ax.set(title=env, xlabel="bit width", ylabel="return")
        ax.legend(fontsize=8)
    return _save(fig, path, "Return vs bit width per quantization scope (FP32 band: mean +- 1 std)")


def training(histories: dict[str, dict[str, list[dict[int, float]]]], path: Path) -> bool:
    """Figure 2: evaluation return over training steps; histories: env -> label -> per-run {step: return}."""
    envs = sorted(e for e, h in histories.items() if any(h.values()))
    if not envs:
        return False
    fig, axes = _panels(envs)
    for env, ax in axes.items():
        for label, runs in sorted(histories[env].items()):
            steps = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
            if steps:
                vals = np.array([[r[s] for s in steps] for r in runs])
                _line(ax, steps, vals.mean(0), vals.std(0), f"{label} ({len(runs)} seeds)", marker=".")
        ax.set(title=env, xlabel="environment steps", ylabel="evaluation return")
        ax.legend(fontsize=8)
    return _save(fig, path, "Training curves: selected vs FP32 (band: std over seeds)")


def noise(noise_data: dict, path: Path) -> bool:
    """Figure 3: return vs observation noise sigma; noise_data: env -> label -> {sigma, mean, std}."""
    envs = sorted(noise_data)
    if not envs:
        return False
    fig, axes = _panels(envs)
    for env, ax in axes.items():
        for label, c in sorted(noise_data[env].items()):
            _line(ax, c["sigma"], c["mean"], c["std"], f"{label} ({len(c['seeds'])} models)")
        ax.set(title=env, xlabel="noise sigma (normalized observation)", ylabel="return")
        ax.legend(fontsize=8)
    return _save(fig, path, "Robustness to Gaussian observation noise (band: std over models)")


def width(trials: list[Trial], fp32: dict[str, Stats], path: Path, skipped: dict | None = None) -> bool:
    """Figure 4: return vs hidden width, one curve per core bit width (input and output at 8 bits).
    skipped: env -> widths a lazy selection did not evaluate."""
    return _sweep(trials, fp32, path, "width", "hidden width",
                  lambda t: (f"core {t.bits('weight')} bits", t.width)
                  if t.bits("in") == t.bits("out") == 8 and t.bits("weight") == t.bits("act") else None,
                  "Return vs hidden width (FP32 band: mean +- 1 std)", log2=True, skipped=skipped)


def input_bits(trials: list[Trial], fp32: dict[str, Stats], path: Path, skipped: dict | None = None) -> bool:
    """Figure 5: return vs input bits, one curve per (core bits, width), output at 8 bits.
    skipped: env -> input bits a lazy selection did not evaluate."""
    return _sweep(trials, fp32, path, "input", "input bits",
                  lambda t: (f"core {t.bits('weight')} bits, width {t.width}", t.bits("in"))
                  if t.bits("out") == 8 and t.bits("weight") == t.bits("act") else None,
                  "Return vs input bit width (FP32 band: mean +- 1 std)", skipped=skipped)


def _sweep(trials, fp32, path, name, xlabel, key, title, log2=False, skipped=None) -> bool:
    skipped = skipped or {}
    curves = {}  # env -> label -> [(x, stats)]
    for t, s in groups(trials):
        k = None if t.fp32 else key(t)
        if k is not None:
            curves.setdefault(t.env_id, {}).setdefault(k[0], []).append((k[1], s))
    # A curve is a sweep only with two or more points along the axis.
    curves = {e: {lab: pts for lab, pts in c.items() if len(pts) > 1} for e, c in curves.items()}
    curves = {e: c for e, c in curves.items() if c}
    if not curves:
        return False
    fig, axes = _panels(sorted(curves))
    for env, ax in axes.items():
        _fp32_band(ax, fp32[env])
        for label, pts in sorted(curves[env].items()):
            pts = sorted(pts, key=lambda p: p[0])
            _line(ax, [p[0] for p in pts], [p[1].mean for p in pts], [p[1].std for p in pts], label)
        _not_trained(ax, skipped.get(env, []))
        if log2:
            ax.set_xscale("log", base=2)
        _integer_ticks(ax, [x for pts in curves[env].values() for x, _ in pts] + skipped.get(env, []))
        ax.set(title=env, xlabel=xlabel, ylabel="return")
        ax.legend(fontsize=8)
    return _save(fig, path, title)
