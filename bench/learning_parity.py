"""Learning parity: qsearch's FP32 learners against CleanRL-style reference loops, side by side.

Each (algorithm, task, seed) is trained twice, by qsearch (qsearch.rl.train, what `qsearch train` runs,
with an FP32 policy) and by the reference in bench/ (cleanrl_{sac,td3,ddpg}_reference.py), with the same
hyperparameters (the reference is given every field of qsearch's algorithm config it knows; qsearch's
sigma_width and buffer_size have no counterpart), the same seed and the same evaluation protocol:
qsearch's evaluate (deterministic actions, `episodes` episodes seeded 1,000,000 + seed + i) every
eval_every steps and at the end.

The implementations differ where qsearch departs from CleanRL on purpose (paper Section 2.2):
qsearch normalizes observations with running statistics and its SAC takes the log-std from a separate
64-wide branch; the references feed raw observations and share the actor's trunk, as CleanRL does.

Tasks (SAC; TD3 and DDPG on `ip` only):
  ip       InvertedPendulum-v5, 10k steps, 5 seeds, eval every 1k
  idp      InvertedDoublePendulum-v5, 20k steps, 3 seeds, eval every 2k
  hopper   Hopper-v5, 50k steps, 2 seeds, eval every 5k
  ip-demo  InvertedPendulum-v5 with the demo's former settings (policy and critic width 64, batch 64,
           learning from step 1,000; the demo now uses widths 256), 10k steps, 5 seeds, eval every 1k
The rest is qsearch's defaults (paper Table 4/5, CleanRL's): widths 256, batch 256, SAC learning from
step 5,000. TD3 and DDPG also learn from step 5,000: their default (qsearch's and CleanRL's 25,000)
exceeds the 10k budget.

Runs go in separate processes, `--workers` at a time (one thread each), a run and its counterpart
submitted next to each other so that they share the machine's load. Env steps/s while learning are the
steps after learning_starts over their wall (and CPU) seconds, evaluations excluded; the machines are
shared, compare the ratio qsearch / reference only.

    PYTHONPATH=. .venv/bin/python bench/learning_parity.py [--tasks ip idp] [--algos sac] [--seeds 2]
        [--steps 3000] [--out docs/results/learning_parity.json] [--figures docs/results]

Results accumulate in --out (a run already there with the same settings is not repeated; --fresh
starts over); figures learning_parity_<algo>_<task>.png and the table (learning_parity_table.md) go
to --figures.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import datetime
import importlib
import inspect
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

TASKS = {
    "ip": {"env": "InvertedPendulum-v5", "steps": 10_000, "seeds": 5, "eval_every": 1_000},
    "idp": {"env": "InvertedDoublePendulum-v5", "steps": 20_000, "seeds": 3, "eval_every": 2_000},
    "hopper": {"env": "Hopper-v5", "steps": 50_000, "seeds": 2, "eval_every": 5_000},
    "ip-demo": {"env": "InvertedPendulum-v5", "steps": 10_000, "seeds": 5, "eval_every": 1_000, "width": 64,
                "algo_config": {"learning_starts": 1_000, "batch_size": 64, "critic_width": 64}},
}
PLAN = {"sac": ["ip-demo", "ip", "idp", "hopper"], "td3": ["ip"], "ddpg": ["ip"]}
# the order runs are submitted in: the cheap, decisive ones first (a run cut short keeps those)
ORDER = [("sac", "ip-demo"), ("sac", "ip"), ("td3", "ip"), ("ddpg", "ip"), ("sac", "idp"), ("sac", "hopper")]
ALGO_OVERRIDES = {"td3": {"learning_starts": 5_000}, "ddpg": {"learning_starts": 5_000}}
EPISODES = 10
IMPLS = ("qsearch", "reference")
LABELS = {"qsearch": "qsearch FP32", "reference": "CleanRL-style reference"}


def job_specs(a) -> list[dict]:
    from qsearch.config import ALGO_CONFIGS, default

    specs = []
    for algo, task in ORDER:
        if algo in a.algos and task in a.tasks:
            t = TASKS[task]
            hp = {**ALGO_OVERRIDES.get(algo, {}), **t.get("algo_config", {})}
            steps = a.steps or t["steps"]
            ls = hp.get("learning_starts", default(ALGO_CONFIGS[algo], "learning_starts"))
            if steps < 2 * ls:  # a smoke run's short budget: learn over its second half
                hp["learning_starts"] = steps // 2
            eval_every = min(t["eval_every"], steps)
            for seed in range(a.seeds or t["seeds"]):
                for impl in IMPLS:
                    specs.append({"impl": impl, "algo": algo, "task": task, "env": t["env"], "seed": seed,
                                  "steps": steps, "eval_every": eval_every, "episodes": a.episodes,
                                  "width": t.get("width", 256), "algo_config": hp})
    if a.seed_major:  # seed 0 of every group, then seed 1, ...: a run cut short stays balanced
        specs.sort(key=lambda s: s["seed"])  # stable: ORDER within a seed
    return specs


def key(spec: dict) -> str:
    return f"{spec['algo']}/{spec['task']}/{spec['impl']}/{spec['seed']}"


def _say(spec: dict, step: int, ret: float, sps: float | None) -> None:
    rate = "" if sps is None else f", {sps:6.1f} learning steps/s"
    print(f"  [{spec['impl']:9s} {spec['algo']} {spec['task']} seed {spec['seed']}] step {step:6d}: "
          f"return {ret:8.1f}{rate}", flush=True)


def run_one(spec: dict) -> dict:
    """One training run in this (fresh) process: the curve and the learning clock."""
    import torch

    from qsearch.config import ALGO_CONFIGS

    torch.set_num_threads(1)
    algo_cfg = ALGO_CONFIGS[spec["algo"]](**spec["algo_config"])
    start = time.perf_counter()
    if spec["impl"] == "qsearch":
        out = _run_qsearch(spec, algo_cfg)
    else:
        sys.path.insert(0, str(BENCH))
        ref = importlib.import_module(f"cleanrl_{spec['algo']}_reference")
        accepted = inspect.signature(ref.train).parameters
        hp = {k: v for k, v in dataclasses.asdict(algo_cfg).items() if k in accepted}
        out = ref.train(spec["env"], spec["steps"], spec["seed"], spec["eval_every"], spec["episodes"],
                        width=spec["width"], progress=lambda s, r, sps: _say(spec, s, r, sps), **hp)
        out["hyperparameters"] = hp
    out["learning_starts"] = algo_cfg.learning_starts
    out["total_seconds"] = time.perf_counter() - start
    return out


def _run_qsearch(spec: dict, algo_cfg) -> dict:
    import qsearch.rl.common as common
    from qsearch import rl
    from qsearch.config import PolicyConfig, TrainConfig

    # Time qsearch's own evaluations (the Monitor calls common.evaluate) so that they can be taken out
    # of the learning clock; the evaluation itself is unchanged.
    spent = [0.0, 0.0]
    evaluate = common.evaluate

    def timed_evaluate(*args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        try:
            return evaluate(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - w
            spent[1] += time.process_time() - c

    common.evaluate = timed_evaluate
    ls, total = algo_cfg.learning_starts, spec["steps"]
    marks = {}

    def progress(m):
        step = m["step"]
        if step in (ls, total):
            marks[step] = (time.perf_counter() - spent[0], time.process_time() - spent[1])
        if "eval_return_mean" in m:
            sps = None
            if step > ls and ls in marks:
                sps = (step - ls) / (time.perf_counter() - spent[0] - marks[ls][0])
            _say(spec, step, m["eval_return_mean"], sps)

    cfg = TrainConfig(env_id=spec["env"], algo=spec["algo"],
                      policy=PolicyConfig(width=spec["width"], depth=2, quant=None),
                      total_steps=total, seed=spec["seed"], eval_every=spec["eval_every"],
                      eval_episodes=spec["episodes"], algo_config=algo_cfg)
    result = rl.train(cfg, progress)
    curve = [{k: row[k] for k in ("step", "eval_return_mean", "eval_return_std")} for row in result.history]
    return {"curve": curve, "learning_steps": total - ls,
            "learn_wall_s": marks[total][0] - marks[ls][0], "learn_cpu_s": marks[total][1] - marks[ls][1],
            "hyperparameters": dataclasses.asdict(algo_cfg)}


# ----------------------------------------------------------------------------------------------------
# summary: figures and table

def groups(results: dict, specs: list[dict]) -> dict:
    """(algo, task) -> impl -> list of run results, for the runs of `specs` that are done."""
    out: dict = {}
    for s in specs:
        r = results.get(key(s))
        if r is not None:
            out.setdefault((s["algo"], s["task"]), {}).setdefault(s["impl"], []).append(r)
    return out


def curves(runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    steps = np.array([row["step"] for row in runs[0]["curve"]])
    values = np.array([[row["eval_return_mean"] for row in r["curve"]] for r in runs])
    return steps, values


def draw(algo: str, task: str, by_impl: dict, folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for impl, color in zip(IMPLS, ("tab:blue", "tab:orange")):
        runs = by_impl.get(impl)
        if not runs:
            continue
        steps, v = curves(runs)
        ax.plot(steps, v.mean(0), color=color, lw=2, label=f"{LABELS[impl]} (mean of {len(runs)})")
        ax.fill_between(steps, v.min(0), v.max(0), color=color, alpha=0.2, lw=0)
        for row in v:
            ax.plot(steps, row, color=color, lw=0.6, alpha=0.5)
    t = TASKS[task]
    runs = next(iter(by_impl.values()))
    ls = runs[0]["learning_starts"]
    ax.axvline(ls, color="grey", ls=":", lw=1)
    extra = " (demo settings: width 64, batch 64)" if task == "ip-demo" else ""
    ax.set_title(f"{algo.upper()} on {t['env']}{extra}", fontsize=10)
    ax.set_xlabel(f"environment steps (learning from step {ls:,})")
    ax.set_ylabel(f"evaluation return (deterministic, {runs[0]['spec']['episodes']} episodes)")
    ax.legend(fontsize=8, loc="best", title="band: min-max over seeds; thin: each seed", title_fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = folder / f"learning_parity_{algo}_{task}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(grouped: dict) -> str:
    lines = ["| algorithm | task | steps | seeds | qsearch FP32 final return | reference final return "
             "| qsearch steps/s | reference steps/s | ratio (wall) | ratio (CPU) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (algo, task), by_impl in grouped.items():
        cells, rate, cpu = {}, {}, {}
        for impl in IMPLS:
            runs = by_impl.get(impl, [])
            if not runs:
                cells[impl] = "-"
                continue
            final = np.array([r["curve"][-1]["eval_return_mean"] for r in runs])
            cells[impl] = f"{final.mean():.1f} ± {final.std():.1f}"
            n = sum(r["learning_steps"] for r in runs)
            rate[impl] = n / sum(r["learn_wall_s"] for r in runs)
            cpu[impl] = n / sum(r["learn_cpu_s"] for r in runs)
        both = len(rate) == 2
        seeds = max(len(v) for v in by_impl.values())
        steps = next(iter(by_impl.values()))[0]["curve"][-1]["step"]
        lines.append(
            f"| {algo.upper()} | {TASKS[task]['env']}{' (demo settings)' if task == 'ip-demo' else ''} | {steps:,} "
            f"| {seeds} | {cells['qsearch']} | {cells['reference']} "
            f"| {rate.get('qsearch', float('nan')):.0f} | {rate.get('reference', float('nan')):.0f} "
            f"| {rate['qsearch'] / rate['reference'] if both else float('nan'):.2f} "
            f"| {cpu['qsearch'] / cpu['reference'] if both else float('nan'):.2f} |")
    return "\n".join(lines)


def summarize(results: dict, specs: list[dict], folder: Path) -> None:
    grouped = groups(results, specs)
    for (algo, task), by_impl in grouped.items():
        print(f"figure: {draw(algo, task, by_impl, folder)}")
    text = table(grouped)
    (folder / "learning_parity_table.md").write_text(
        "Final return: mean ± std over seeds of each seed's last evaluation (mean of "
        f"{EPISODES} deterministic episodes).\nSteps/s: environment steps after learning_starts per second "
        "while learning (evaluations excluded), all seeds pooled; ratio = qsearch / reference.\n\n" + text + "\n")
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--algos", nargs="+", choices=list(PLAN), default=list(PLAN))
    p.add_argument("--seeds", type=int, help="seeds per task (default: the task's)")
    p.add_argument("--steps", type=int, help="environment steps per run (default: the task's)")
    p.add_argument("--episodes", type=int, default=EPISODES, help="evaluation episodes")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "docs/results/learning_parity.json")
    p.add_argument("--figures", type=Path, default=ROOT / "docs/results")
    p.add_argument("--seed-major", action="store_true",
                   help="submit seed 0 of every task first, then seed 1, ... (default: task by task, in ORDER)")
    p.add_argument("--fresh", action="store_true", help="ignore runs already in --out")
    p.add_argument("--summary-only", action="store_true", help="redraw figures and table from --out")
    a = p.parse_args()

    specs = job_specs(a)
    store = {"runs": {}} if a.fresh or not a.out.exists() else json.loads(a.out.read_text())
    results = store["runs"]
    a.figures.mkdir(parents=True, exist_ok=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if not a.summary_only:
        todo = [s for s in specs if results.get(key(s), {}).get("spec") != s]
        store.setdefault("sessions", []).append(
            {"started": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv[1:],
             "load_at_start": os.getloadavg(), "cpus": os.cpu_count(), "runs": len(todo)})
        print(f"{len(todo)} runs to do ({len(specs) - len(todo)} already in {a.out}), {a.workers} at a time", flush=True)
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(a.workers, mp_context=ctx, max_tasks_per_child=1) as pool:
            futures = {pool.submit(run_one, s): s for s in todo}
            for i, fut in enumerate(cf.as_completed(futures), 1):
                s = futures[fut]
                r = fut.result()
                r["spec"] = s
                results[key(s)] = r
                store["sessions"][-1]["load_at_end"] = os.getloadavg()
                a.out.write_text(json.dumps(store, indent=1))
                print(f"done {i}/{len(todo)}: {key(s)}: final return {r['curve'][-1]['eval_return_mean']:.1f}, "
                      f"{r['learning_steps'] / r['learn_wall_s']:.1f} learning steps/s, "
                      f"{r['total_seconds']:.0f} s", flush=True)
    summarize(results, specs, a.figures)


if __name__ == "__main__":
    main()
