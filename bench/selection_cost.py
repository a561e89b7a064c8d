"""Selection cost: what each strategy of `qsearch select` trains, how long it takes on a cluster, and
whether it selects what the full grid selects. Replays selections without training
(qsearch/select/replay.py), on outcomes from a synthetic generator or from a tracking store.

Synthetic (default): the paper's selection space (search_spaces/paper_selection.yaml: five tasks,
core bits 2-8, widths 16-256, input bits 2-8, 10 seeds, sigma rule), with outcomes shaped after the
paper's Table 1 and Figures 1, 4, 5: per task, FP32's seeds have mean M and std 0.1 M; a value at or
beyond the task's Table 1 pick has a true mean of M, a value short of it a true mean that falls
linearly from 0.9 M (one step short) to 0.6 M (the farthest), with the same seed spread (a
configuration short in several dimensions takes the lowest); evaluation curves rise as
1 - exp(-5 t) over the budget, with noise of 5% of the final return, at 20 checkpoints. `--draws`
random draws (default 20).

Store: `--store DIR`, a selection's folder (select.json) whose store holds every trial of its stages
(a `qsearch select` with `speculation: all`); one replay of those outcomes.

Per strategy: environment steps as a share of the full grid's, wall time as a share of the full
grid's on simulated clusters of 10, 50 and 400 slots (every trial takes one unit of time), and on how
many replays the selection is identical to the full grid's (changed: environments whose pick
differs, over all replays; early: values decided on less evidence; both counted on 10 slots, as
early rejection's decisions can depend on when FP32's trials end).

    .venv/bin/python bench/selection_cost.py [--draws 20] [--store runs/NAME]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qsearch.select import lazy, replay, spec  # noqa: E402

SLOTS = (10, 50, 400)
TABLE1 = {"Humanoid-v5": (16, 3, 4), "Walker2d-v5": (128, 2, 3), "Ant-v5": (64, 2, 3),  # width, core, input
          "HalfCheetah-v5": (256, 3, 8), "Hopper-v5": (16, 2, 6)}
FP32_MEAN = {"Humanoid-v5": 6300.0, "Walker2d-v5": 5000.0, "Ant-v5": 5100.0, "HalfCheetah-v5": 11100.0,
             "Hopper-v5": 2700.0}  # paper Table 6 (input normalization); only the shape matters
CHECKPOINTS = 20
STRATEGIES = {  # name -> Strategy
    "full grid (speculation all)": lazy.Strategy(speculation=None),
    "lazy, speculation 0": lazy.Strategy(speculation=0),
    "lazy, speculation 1": lazy.Strategy(speculation=1),
    "lazy, speculation 2": lazy.Strategy(speculation=2),
    "lazy 0 + adaptive seeds 3": lazy.Strategy(speculation=0, adaptive_seeds=3),
    "lazy 0 + early rejection 3 + adaptive 3": lazy.Strategy(speculation=0, early_reject=3.0, adaptive_seeds=3),
    "lazy 0 + early rejection 4 + adaptive 3": lazy.Strategy(speculation=0, early_reject=4.0, adaptive_seeds=3),
    "lazy 0 + early rejection 4 + adaptive 2": lazy.Strategy(speculation=0, early_reject=4.0, adaptive_seeds=2),
    "lazy 1 + early rejection 4 + adaptive 2": lazy.Strategy(speculation=1, early_reject=4.0, adaptive_seeds=2),
}


def factor(value: int, pick: int, candidates: list[int]) -> float:
    """The true mean's share of M for a value of one dimension, given the Table 1 pick."""
    if value >= pick:
        return 1.0
    ranked = sorted(candidates)
    short, farthest = ranked.index(pick) - ranked.index(value), ranked.index(pick)
    return 0.9 if farthest <= 1 else 0.9 - 0.3 * (short - 1) / (farthest - 1)


def synthetic(sel: spec.Selection, draw: int):
    """outcome(space, configuration, seed) for one random draw."""
    cores, widths, inputs = list(sel.core_bits), sorted(set(sel.widths) | {sel.width}), sorted(set(sel.input_bits) | {8})

    def outcome(space, conf, seed):
        m = FP32_MEAN[conf.env_id]
        q = conf.policy.quant
        if q is None:
            mean = m
        else:
            width, core, inp = TABLE1[conf.env_id]
            mean = m * min(factor(q.bits_weight, core, cores), factor(conf.policy.width, width, widths),
                           factor(q.bits_in, inp, inputs))
        rng = np.random.default_rng([draw, zlib.crc32(conf.key.encode()), seed])
        final = float(mean + rng.normal(0, 0.1 * m))
        steps = [round(space.steps * k / CHECKPOINTS) for k in range(1, CHECKPOINTS + 1)]
        curve = {s: float(final * (1 - math.exp(-5 * s / space.steps)) + rng.normal(0, 0.05 * abs(final)))
                 for s in steps}
        return replay.Outcome(final, curve)

    return outcome


def from_store(folder: Path):
    """(selection, outcome) from a selection's folder: every finished trial of its store, by key."""
    from qsearch import run_folder, tracking
    from qsearch import trial_record as record

    state = run_folder.state(folder, run_folder.SELECTION)
    sel = spec.load(state["space"])
    c = tracking.client(state["tracking_uri"])
    by_key = {t.key: replay.Outcome(t.final_return, record.eval_history(c, t.run_id))
              for t in record.read_trials(state["tracking_uri"])}

    def outcome(space, conf, seed):
        return by_key.get(record.trial_key(space.trial_params(conf, seed)), replay.Outcome(None))

    return sel, outcome


def run(sel: spec.Selection, outcomes: list) -> list[dict]:
    grid = {(i, slots): replay.replay(sel, o, STRATEGIES["full grid (speculation all)"], slots)
            for i, o in enumerate(outcomes) for slots in SLOTS}
    reference = [replay.full_grid(sel, o) for o in outcomes]
    assert all(grid[(i, SLOTS[0])].picks == r for i, r in enumerate(reference)), \
        "the full grid's replay must select what the full grid selects"
    rows = []
    for name, strategy in STRATEGIES.items():
        row = {"strategy": name, "steps": {}, "wall": {}, "identical": 0, "changed": 0, "early": 0}
        for slots in SLOTS:
            steps, walls = [], []
            for i, outcome in enumerate(outcomes):
                r = replay.replay(sel, outcome, strategy, slots)
                steps.append(r.steps / grid[(i, slots)].steps)
                walls.append(r.wall / grid[(i, slots)].wall)
                if slots == SLOTS[0]:  # the picks do not depend on the cluster's size
                    row["identical"] += r.picks == reference[i]
                    row["changed"] += sum(r.picks.get(e) != p for e, p in reference[i].items())
                    row["early"] += r.notes
            row["steps"][slots], row["wall"][slots] = float(np.mean(steps)), float(np.mean(walls))
        rows.append(row)
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], replays: int, envs: int) -> str:
    head = (f"{'strategy':<42} {'env steps / grid (10/50/400 slots)':>36} {'wall / grid (10/50/400)':>26} "
            f"{'identical':>10} {'changed':>8} {'early':>6}")
    lines = [head]
    for r in rows:
        steps = " / ".join(f"{r['steps'][s]:.0%}" for s in SLOTS)
        wall = " / ".join(f"{r['wall'][s]:.2f}" for s in SLOTS)
        lines.append(f"{r['strategy']:<42} {steps:>36} {wall:>26} {r['identical']:>4} of {replays:<3} "
                     f"{r['changed']:>3}/{replays * envs:<4} {r['early']:>6}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--draws", type=int, default=20, help="random draws of the synthetic outcomes")
    p.add_argument("--store", help="a selection's folder whose store holds every trial (speculation: all)")
    a = p.parse_args()
    started = time.perf_counter()
    if a.store:
        sel, outcome = from_store(Path(a.store))
        outcomes, what = [outcome], f"store {a.store} ({sel.name})"
    else:
        sel = spec.load(ROOT / "search_spaces" / "paper_selection.yaml")
        outcomes, what = [synthetic(sel, d) for d in range(a.draws)], f"synthetic, paper-shaped, {a.draws} draws"
    print(f"selection cost: {what}", flush=True)
    print(table(run(sel, outcomes), len(outcomes), len(sel.envs)))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
