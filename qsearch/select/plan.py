"""`qsearch select SPACE --plan`: what a selection costs, before anything trains.

Per strategy, the trials and environment steps in the worst case (no value matches until the last:
every strategy trains the whole grid) and in the best case (the smallest value of every stage
matches: FP32, then 1 + speculation values per stage), and, given the trials already in the
tracking store, what remains at most. Nothing is written: not the selection's folder, not a store.
"""
from __future__ import annotations

from pathlib import Path

from qsearch import run_folder
from qsearch.select import spec
from qsearch.select.store import Store
from qsearch.select.walk import walk

SPECULATIONS = (None, 0, 1, 2)


def per_env(sel: spec.Selection) -> dict[str, int]:
    """Configurations a stage trains per environment, beyond those an earlier stage trained."""
    return {"core": 1 + len(sel.core_bits), "width": len(set(sel.widths) | {sel.width}) - 1,
            "input": len(set(sel.input_bits) | {8}) - 1, **({"lut": len(sel.lut_sizes)} if sel.lut_sizes else {})}


def trials(sel: spec.Selection, speculation: int | None, best: bool) -> int:
    n = per_env(sel)
    if best and speculation is not None:  # FP32, then the smallest value and `speculation` more per stage
        n = {stage: (1 if stage == "core" else 0) + min(speculation + 1, k - (stage == "core")) for stage, k in n.items()}
    return len(sel.envs) * len(sel.base.seeds) * sum(n.values())


def remaining(sel: spec.Selection, uri: str | None) -> tuple[int, int]:
    """(trials in the store that the stages would use, trials left at most), stage by stage: a stage
    the store already decides passes its picks on; after an undecided one, every pick is possible."""
    store = Store(uri)
    walked = walk(sel, store)
    found = sum(f.new_found for f in store.fed.values())
    left = sum(f.new_missing for f in store.fed.values())
    undecided = [s for s in store.fed if s not in {st.stage for st in walked.stages}]
    if undecided:  # the stages after the one the store cannot decide: their whole worst case
        later = sel.stages[sel.stages.index(undecided[0]) + 1:]
        left += sum(len(sel.envs) * len(sel.base.seeds) * per_env(sel)[stage] for stage in later)
    return found, left


def plan(space_path: str | Path, workdir: str | Path | None = None, tracking_uri: str | None = None) -> str:
    sel = spec.load(space_path)
    folder = Path(workdir or run_folder.default(sel.name))
    uri = run_folder.tracking_uri(folder) if run_folder.kind(folder) else tracking_uri
    steps = sel.base.steps
    n = per_env(sel)
    lines = [f"Plan of selection {sel.name}: {len(sel.envs)} environments x {len(sel.base.seeds)} seeds, "
             f"{steps:,} environment steps per trial",
             f"  per environment: stage core FP32 + {n['core'] - 1} core bits, stage width {n['width']} widths, "
             f"stage input {n['input']} input bits (each stage's earlier pick is reused)"
             + (f", stage lut {n['lut']} logic circuits" if "lut" in n else ""),
             f"  {'strategy':<34} {'worst case: trials':>18} {'env steps':>16}   {'best case: trials':>17} {'env steps':>16}"]
    for k in SPECULATIONS:
        name = "full grid (speculation all)" if k is None else f"lazy, speculation {k}"
        name += " <- this space" if k == sel.speculation else ""
        worst, best = trials(sel, k, False), trials(sel, k, True)
        lines.append(f"  {name:<34} {worst:>18,} {worst * steps:>16,}   {best:>17,} {best * steps:>16,}")
    if sel.early_reject is not None or sel.adaptive_seeds:
        lines.append("  early rejection and adaptive seeds stop or skip trials of failing values: within these bounds")
    lines.append(f"  parity rule: {sel.rule.describe()}")
    if uri is None:
        lines.append("  no tracking store yet: everything remains")
    else:
        found, left = remaining(sel, uri)
        lines.append(f"  tracking store {uri}: {found:,} of the stages' trials there; "
                     f"remaining at most {left:,} trials, {left * steps:,} environment steps")
    return "\n".join(lines)

