"""Logic circuits against networks (docs/results/logic_circuits.md): one table per task from the
studies' report data (`qsearch report SPACE --data docs/results/STUDY.json`: final returns, and the
open-flow designs of `qsearch hw --all-trials` at each throughput target) and every quantized trial's C
export on an emulated Cortex-M4 (trials already in the M4 data are not exported again), and a figure of
their evaluation curves (logic_circuits_curves.png).

Each trial's policy goes through the real command line, from its MLflow run:
`qsearch export RUN --tracking-uri URI --format c --target cortex-m4 --verify 1000`, which builds it,
checks it against the NumPy engine on the core and counts instructions per action; the reports land in
docs/results/logic_circuits_mcu.json. The table is drawn from the committed data alone with
--from-data.

    .venv/bin/python bench/lut_evidence.py lut_idp lut_pusher          # export, write the M4 data, print
    .venv/bin/python bench/lut_evidence.py lut_idp lut_pusher --from-data   # print from the data files
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch.select import pareto, report
from qsearch.select.parity import Rule, verdict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
MCU_DATA = RESULTS / "logic_circuits_mcu.json"
CURVES = RESULTS / "logic_circuits_curves.png"
TARGET = "cortex-m4"
# Beside the paper's rule (a mean within one FP32 std over seeds), the band floored at 1% of the FP32
# mean, as search_spaces/reduced_idp.yaml's selection sets it: at a return ceiling FP32's std is ~0.01%.
FLOOR = Rule(min_band=0.01)
KEEP = ("instructions_per_action", "instructions_per_action_max", "instructions_per_action_int_obs",
        "flash", "ram", "layout")


def _data(study: str):
    return report.from_data(RESULTS / f"{study}.json")


def export_all(studies: list[str], rows: dict) -> dict:
    """rows with the M4 report of every quantized trial's policy of the studies that it lacks (run id ->
    report)."""
    for study in studies:
        data = _data(study)
        for t in (t for t in data.trials if not t.fp32 and t.run_id not in rows):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "c"
                cmd = [str(ROOT / ".venv" / "bin" / "qsearch"), "export", t.run_id, "--tracking-uri", data.uri,
                       "--format", "c", "--target", TARGET, "--verify", "1000", "--out", str(out)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                r = json.loads((out / TARGET / "report.json").read_text())
            verified = [line for line in done.stdout.splitlines() if "verified on" in line]
            rows[t.run_id] = {"study": study, "configuration": t.configuration, "seed": t.seed,
                              **{k: r[k] for k in KEEP}, "verified": verified[0].strip() if verified else None}
            print(f"{t.configuration} seed {t.seed}: {r['instructions_per_action']:,.0f} instructions per action, "
                  f"flash {r['flash']:,} B, RAM {r['ram']:,} B", flush=True)
    return rows


def table(study: str, mcu: dict) -> list[str]:
    """Per task: every configuration's return, its designs at each target (LUTs, cycles) and its M4 cost."""
    data = _data(study)
    pts = pareto.points(data)
    targets = sorted({p.target_fps for p in pts})
    lines = []
    for env in sorted({t.env_id for t in data.trials}):
        head = " | ".join(f"LUT at {t:.0e}/s | cycles at {t:.0e}/s" for t in targets)
        lines += [f"{env} (FP32: {data.fp32[env]})", "",
                  f"| configuration | return | paper's rule | 1% band floor | {head} | M4 instructions per action "
                  "| M4 flash (B) |", "|---|---:|---|---|" + "---:|" * (2 * len(targets)) + "---:|---:|"]
        configs = sorted({p.configuration for p in pts if p.env_id == env},
                         key=lambda c: min(p.lut for p in pts if p.configuration == c))
        for c in configs:
            mine = {p.target_fps: p for p in pts if p.configuration == c}
            first = next(iter(mine.values()))
            cells = " | ".join(_cost(mine.get(t)) for t in targets)
            m = [r for r in mcu.values() if r["study"] == study and r["configuration"] == c]
            instr = sum(r["instructions_per_action"] for r in m) / len(m) if m else None
            flash = max(r["flash"] for r in m) if m else None
            floor = verdict(first.stats, data.fp32[env], FLOOR).match
            lines.append(f"| {first.label} | {first.stats} | {'yes' if first.matches_fp32 else 'no'} | "
                         f"{'yes' if floor else 'no'} | {cells} | "
                         f"{'-' if instr is None else f'{instr:,.0f}'} | {'-' if flash is None else f'{flash:,}'} |")
        lines.append("")
    return lines


def draw_curves(studies: list[str], path: Path) -> None:
    """Evaluation return over training steps, mean over seeds (band: min to max), one panel per study."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(studies), figsize=(5.5 * len(studies), 4), squeeze=False)
    for ax, study in zip(axes[0], studies):
        data = _data(study)
        for i, c in enumerate(sorted({t.configuration for t in data.trials})):
            runs = [data.curves[t.run_id] for t in data.trials if t.configuration == c]
            steps = sorted(set.intersection(*(set(r) for r in runs)))
            y = np.array([[r[s] for s in steps] for r in runs])
            ax.plot(steps, y.mean(0), "-", color=f"C{i}", label=f"{c.split('/', 1)[1]} ({len(runs)} seeds)")
            ax.fill_between(steps, y.min(0), y.max(0), color=f"C{i}", alpha=0.15)
        ax.set_title(f"{study}: {data.trials[0].env_id}", fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return (5 episodes)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cost(p) -> str:
    """A design's LUTs and latency in cycles, marked when over the device; named when not synthesized."""
    if p is None:
        return "not synthesized | -"
    return f"{p.lut:,.0f}{'' if p.fits else ' (over the device)'} | {p.latency_cycles}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs="+", help="report data files docs/results/STUDY.json, by STUDY")
    ap.add_argument("--from-data", action="store_true", help=f"only read {MCU_DATA.name}, export nothing")
    a = ap.parse_args()
    mcu = json.loads(MCU_DATA.read_text())["trials"] if MCU_DATA.is_file() else {}
    if not a.from_data:
        mcu = export_all(a.studies, mcu)
        MCU_DATA.write_text(json.dumps({"target": TARGET, "command": "qsearch export RUN --tracking-uri URI "
                                        f"--format c --target {TARGET} --verify 1000", "trials": mcu}, indent=1) + "\n")
    for study in a.studies:
        print("\n".join(table(study, mcu)))
    draw_curves(a.studies, CURVES)
    print(f"wrote {CURVES.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except QsearchError as e:
        print(f"lut_evidence: {e}", file=sys.stderr)
        sys.exit(2)
