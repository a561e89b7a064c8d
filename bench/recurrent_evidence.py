"""The evidence for recurrent policies (docs/results/recurrent.md): on InvertedPendulum-v5 without its
velocities, 3 seeds each of
  FP32 MLP on the full observation (the reference), FP32 MLP on positions only,
  FP32 GRU on positions only, QAT GRU on positions only at core 8, 4 and 2 bits,
  and INT8 PTQ of each FP32 GRU (qsearch ptq, Böhm et al.'s setting).
Every run is `qsearch train` (and `qsearch ptq`) into runs/recurrent_evidence/, two at a time; a run
whose bundle exists is not run again, so the study continues where it stopped. --only trains the
variants whose names contain one of its words; the others keep the runs the page's data records
(each run records the commit it was made at).

    .venv/bin/python bench/recurrent_evidence.py [--steps 20000] [--jobs 2]   # train, then write the page
    .venv/bin/python bench/recurrent_evidence.py --only "QAT GRU"   # re-run the QAT rows alone
    .venv/bin/python bench/recurrent_evidence.py --from-data docs/results/recurrent.json   # redraw the page

The page's data (recurrent.json) holds every run's command, final returns (torch and integer engine)
and evaluation curve, so the table and figure are redrawn from it alone.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QSEARCH = str(ROOT / ".venv" / "bin" / "qsearch")
ENV, SEEDS = "InvertedPendulum-v5", (0, 1, 2)
RESULTS = ROOT / "docs" / "results"
GRU = ["--encoder", "gru", "--encoder-width", "32"]
VARIANTS = {  # name -> qsearch train flags (besides env, steps, seed, out)
    "FP32 MLP, full observation": ["--fp32", "--observe", "all"],
    "FP32 MLP, positions": ["--fp32", "--observe", "positions"],
    "FP32 GRU, positions": ["--fp32", "--observe", "positions", *GRU],
    "QAT GRU core 8, positions": ["--scope", "core", "--bits", "8", "--observe", "positions", *GRU],
    "QAT GRU core 4, positions": ["--scope", "core", "--bits", "4", "--observe", "positions", *GRU],
    "QAT GRU core 2, positions": ["--scope", "core", "--bits", "2", "--observe", "positions", *GRU],
}
PTQ = "INT8 PTQ of the FP32 GRU, positions"
PTQ_FLAGS = ["--bits-core", "8", "--bits-in", "8"]


def folder(work: Path, name: str, seed: int) -> Path:
    slug = name.lower().replace(",", "").replace(" ", "-")
    return work / f"{slug}-s{seed}"


def train(work: Path, name: str, seed: int, steps: int, common: list[str]) -> list[str]:
    out = folder(work, name, seed)
    cmd = [QSEARCH, "train", "--env", ENV, "--steps", str(steps), "--seed", str(seed), *common,
           *VARIANTS[name], "--out", str(out)]
    _run(cmd, out)
    return cmd


def ptq(work: Path, seed: int) -> list[str]:
    out = folder(work, PTQ, seed)
    cmd = [QSEARCH, "ptq", str(folder(work, "FP32 GRU, positions", seed)), *PTQ_FLAGS, "--out", str(out)]
    _run(cmd, out)
    return cmd


def _run(cmd: list[str], out: Path) -> None:
    if (out / "bundle.json").exists():
        return
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    print(f"{out.name}: {time.time() - t:.0f} s", flush=True)


def collect(work: Path, names: list[str], commands: dict, kept: dict, commit: str, defect: dict | None) -> dict:
    """The runs of `names` from their bundles (trained at `commit`); every other variant's from `kept`
    (the page's data). defect: the figures the page's defect section quotes, carried over as they are."""
    runs = []
    for name in [*VARIANTS, PTQ]:
        for seed in SEEDS:
            if name not in names:
                runs.append(kept[name, seed])
                continue
            b = folder(work, name, seed)
            ev = json.loads((b / "eval.json").read_text())
            history = json.loads((b / "history.json").read_text())
            command = [str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c for c in commands[name, seed]]
            runs.append({"variant": name, "seed": seed, "commit": commit, "command": command,
                         "torch": ev["torch"]["mean"], "int": ev.get("int", {}).get("mean"),
                         "curve": [[h["step"], h["eval_return_mean"]] for h in history]})
    return {"format": "qsearch-recurrent-evidence", "env_id": ENV, "seeds": list(SEEDS), "runs": runs,
            "defect": defect}


def write_page(data: dict, out: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(dict.fromkeys(r["variant"] for r in data["runs"]))
    rows, fig = [], plt.figure(figsize=(8, 4.5))
    for name in names:
        runs = [r for r in data["runs"] if r["variant"] == name]
        final = np.array([r["int"] if r["int"] is not None else r["torch"] for r in runs])
        rows.append(f"| {name} | {' / '.join(f'{v:.0f}' for v in final)} | {final.mean():.0f} +- {final.std():.0f} |")
        if name != PTQ:  # a PTQ policy has its source's curve
            steps = [s for s, _ in runs[0]["curve"]]
            curve = np.mean([[v for _, v in r["curve"]] for r in runs], axis=0)
            plt.plot(steps, curve, label=name)
    plt.xlabel("environment steps")
    plt.ylabel(f"evaluation return (mean of {len(data['seeds'])} seeds)")
    plt.title(f"{data['env_id']} without velocities")
    plt.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "recurrent.png", dpi=120)
    table = ["| policy | final return per seed (integer engine where quantized) | mean +- std |", "|---|---|---|", *rows]
    (out / "recurrent_table.md").write_text("\n".join(table) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "recurrent_evidence")
    p.add_argument("--only", nargs="+", metavar="WORD", help="train only the variants whose names contain one of these")
    p.add_argument("--from-data", type=Path, help="redraw the table and figure from this file alone")
    a = p.parse_args()
    if a.from_data:
        write_page(json.loads(a.from_data.read_text()), a.from_data.parent)
        return
    common = ["--eval-every", str(a.steps // 10), "--episodes", "10", "--learning-starts", "1000"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    names = [n for n in [*VARIANTS, PTQ] if not a.only or any(w in n for w in a.only)]
    if not names:
        p.error(f"--only {' '.join(a.only)} matches none of: {', '.join([*VARIANTS, PTQ])}")
    data_file = RESULTS / "recurrent.json"
    earlier = json.loads(data_file.read_text()) if data_file.exists() else {"runs": []}
    kept = {(r["variant"], r["seed"]): r for r in earlier["runs"]}
    if missing := [n for n in [*VARIANTS, PTQ] if n not in names and (n, SEEDS[0]) not in kept]:
        sys.exit(f"{data_file} has no runs of {', '.join(missing)}; train them too")
    jobs = [(name, seed) for seed in SEEDS for name in VARIANTS if name in names]
    with ThreadPoolExecutor(a.jobs) as pool:
        commands = dict(zip(jobs, pool.map(lambda j: train(a.work, *j, a.steps, common), jobs)))
        if PTQ in names:
            commands |= dict(zip([(PTQ, s) for s in SEEDS], pool.map(lambda s: ptq(a.work, s), SEEDS)))
    data = collect(a.work, names, commands, kept, commit, earlier.get("defect"))
    data_file.write_text(json.dumps(data, indent=1) + "\n")
    write_page(data, RESULTS)


if __name__ == "__main__":
    main()
