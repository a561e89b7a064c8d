"""Search overhead: wall time of a search vs the time its trials spend training.

Runs a search (default search_spaces/quickstart.yaml) on a fresh local Ray and prints:
  wall           driver start to table printed (Ray start, MLflow, worker start-up, evaluation, ...)
  training       sum over trials of the learner's own training time (pipeline's train_seconds)
  work           sum over trials of pipeline.run: training, final evaluation, integer model, bundle
  overhead share 1 - (sum / concurrent slots) / wall: the part of the machine's time not spent on
                 the trials' own work (Ray and worker start-up, imports, MLflow, idle slots)

    .venv/bin/python bench/search_overhead.py [SPACE.yaml] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", nargs="?", default=str(ROOT / "search_spaces" / "quickstart.yaml"))
    p.add_argument("--workdir", help="default: a temporary folder, removed afterwards")
    a = p.parse_args()

    from qsearch.search.run import search
    from qsearch.search.space import load

    space = load(a.space)
    workdir = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="qsearch-bench-"))
    slots = min(os.cpu_count() or 1, space.trials) / space.resources.cpu
    t0 = time.perf_counter()
    out = search(a.space, workdir=workdir / "search")
    wall = time.perf_counter() - t0
    done = [r for r in out.rows if r["status"] == "done"]
    total = {k: sum(r[k] or 0.0 for r in done) for k in ("train_seconds", "work_seconds", "trial_seconds")}
    print()
    print(f"space {space.name}: {len(out.rows)} trials ({len(done)} done), {slots:.0f} concurrent slots")
    print(f"wall                     {wall:8.1f} s")
    print(f"trial training (sum)     {total['train_seconds']:8.1f} s   ({total['train_seconds'] / len(done):.1f} s per trial)")
    print(f"trial work (sum)         {total['work_seconds']:8.1f} s   (training + final evaluation + bundle)")
    print(f"trial function (sum)     {total['trial_seconds']:8.1f} s   (work + imports, MLflow child run and artifacts)")
    for label, key in (("training", "train_seconds"), ("work", "work_seconds")):
        ideal = total[key] / slots
        print(f"overhead share vs {label:8s} {100 * (1 - ideal / wall):6.1f} %   (1 - ({label} sum / slots) / wall)")
    if not a.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
