"""A real MLflow store filled with synthetic finished trials, as a search would have logged them.

The runs are written through the trial record, as the trainable writes them: the trial's params,
an evaluation history and a final return, so selection and reports read them exactly as they read
trained ones; only the returns are made up.
"""
from pathlib import Path

import yaml

from qsearch import tracking
from qsearch import trial_record as record
from qsearch.search import space as spaces
from qsearch.select import spec

ENV = "InvertedPendulum-v5"


def selection_file(folder: Path, name="synthetic", top: dict | None = None, **selection) -> Path:
    """A selection space file; top: top-level keys to change (steps, seeds, ...)."""
    data = {"name": name, "envs": [ENV], "algo": "sac", "steps": 50, "seeds": [0, 1, 2],
            "eval_every": 25, "eval_episodes": 1, "final_episodes": 1, "policy": {"width": 64, "depth": 2},
            "algo_config": {"learning_starts": 10, "batch_size": 8},
            "selection": {"core_bits": [2, 3, 4], "widths": [32, 16], "input_bits": [2, 4], **selection},
            **(top or {})}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def filled_selection(tmp_path: Path, returns=None) -> tuple[Path, Path, str]:
    """(selection file, its folder, tracking URI) with every result the selection could ask for already
    in the folder's store: returns(conf, seed) -> float, paper_like by default."""
    path = selection_file(tmp_path)
    workdir = tmp_path / "sel"
    workdir.mkdir()
    uri = tracking.default_uri(workdir)
    fill(uri, workdir, path, returns or paper_like)
    return path, workdir, uri


def superset(sel: spec.Selection) -> spaces.SearchSpace:
    """Every configuration any stage could ask for: FP32, and all core bits x widths x input bits."""
    data = dict(sel.data, sweep=[{"fp32": True}, {"bits_core": list(sel.core_bits), "bits_out": 8,
                                                  "width": sorted(set(sel.widths) | {sel.width}),
                                                  "bits_in": sorted(set(sel.input_bits) | {8})}])
    return spaces.parse(data, "superset")


def fill(uri: str, workdir: Path, space_path: Path, returns, experiment="earlier-search", skip=()) -> int:
    """Log a finished trial for every configuration x seed of the superset: returns(conf, seed) -> float
    (None: no run). skip: (configuration key, seed) pairs left out. Returns the number of runs."""
    space = superset(spec.load(space_path))
    return fill_space(uri, workdir, space, returns, tracking.experiment(uri, experiment, workdir), skip)


def fill_space(uri: str, workdir: Path, space, returns, exp: str, skip=(), parent: str | None = None) -> int:
    parent = parent or record.start_search(uri, exp, "synthetic search", {})
    n = 0
    for conf in space.configurations:
        for seed in space.seeds:
            r = returns(conf, seed)
            if r is None or (conf.key, seed) in skip:
                continue
            c, run = record.start_trial(uri, exp, parent, f"synthetic-{n}", f"{conf.key} seed {seed}",
                                        space.trial_params(conf, seed))
            for step in range(space.eval_every, space.steps + 1, space.eval_every):
                tracking.log_metrics(c, run, {record.EVAL_RETURN: r * step / space.steps}, step)
            tracking.log_metrics(c, run, {record.FINAL_RETURN: r}, space.steps)
            record.end_trial(c, run)
            n += 1
    return n


def paper_like(conf, seed):
    """FP32 1000 +- ~8; core 2 fails; core 3 and 4 match; width 16 fails; input 2 fails."""
    q, p = conf.policy.quant, conf.policy
    noise = (seed - 1) * 10.0
    if q is None:
        return 1000.0 + noise
    if q.bits_weight == 2 or p.width == 16 or q.bits_in == 2:
        return 600.0 + noise
    return 998.0 + noise
