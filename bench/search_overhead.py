"""Search overhead: wall time of a search vs the time its trials spend training.

Runs a search (default search_spaces/quickstart.yaml) on a fresh local Ray and prints:
  wall           driver start to table printed (Ray start, MLflow, worker start-up, evaluation, ...)
  trial train    sum over trials of the learner's own training time (pipeline's train_seconds)
  ideal wall     trial train / concurrent slots (the CPUs the search may use)
  overhead share 1 - ideal wall / wall: the part of the machine's time not spent training

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
    train = sum(r["train_seconds"] or 0.0 for r in out.rows)
    done = [r for r in out.rows if r["status"] == "done"]
    per_trial = train / max(1, len(done))
    ideal = train / slots
    print()
    print(f"space {space.name}: {len(out.rows)} trials ({len(done)} done), "
          f"{slots:.0f} concurrent slots")
    print(f"wall                 {wall:8.1f} s")
    print(f"trial train (sum)    {train:8.1f} s   ({per_trial:.1f} s per trial)")
    print(f"ideal wall           {ideal:8.1f} s   (train sum / slots)")
    print(f"overhead share       {100 * (1 - ideal / wall):8.1f} %")
    if not a.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
