"""Fingerprints of short QAT runs' bundles: run it at two commits to show a change leaves results alone.

Three short runs through pipeline.run (SAC with an MLP actor, TD3 on Hopper, SAC with a GRU encoder),
each past the activation warm-up, so both brevitas' warm-up path and the fast path train. Printed per
run: the SHA-256 (first 16 hex digits) of actor.pt, integer.npz and norm.npz, of the history without
its timing field (steps_per_s) and of eval.json without train_seconds. Equal lines before and after a
change: the same bytes and the same learning history (issue 27's rule for speed-ups).

    PYTHONPATH=. .venv/bin/python bench/bundle_fingerprint.py > after.txt    (~70 s on one core)
    git stash; PYTHONPATH=. .venv/bin/python bench/bundle_fingerprint.py > before.txt; git stash pop
    diff before.txt after.txt
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qsearch import pipeline  # noqa: E402
from qsearch.config import PolicyConfig, QuantBits, SACConfig, TD3Config, TrainConfig  # noqa: E402

RUNS = {
    "sac_mlp_core3": TrainConfig("InvertedPendulum-v5", "sac", PolicyConfig(width=64, quant=QuantBits.from_scope("core", 3)),
                                 2500, 0, 2500, 2, SACConfig(learning_starts=500, buffer_size=10_000)),
    "td3_mlp_core2": TrainConfig("Hopper-v5", "td3", PolicyConfig(width=64, quant=QuantBits.from_scope("core", 2)),
                                 2500, 1, 2500, 2, TD3Config(learning_starts=500, buffer_size=10_000)),
    "sac_gru_core4": TrainConfig("InvertedPendulum-v5", "sac", PolicyConfig(width=32, quant=QuantBits.from_scope("core", 4),
                                                                            encoder="gru", encoder_width=16),
                                 1500, 0, 1500, 1, SACConfig(learning_starts=500, buffer_size=10_000)),
}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(cfg: TrainConfig) -> dict[str, str]:
    folder = Path(tempfile.mkdtemp(prefix="fingerprint-")) / "bundle"
    pipeline.run(cfg, folder, episodes=2)
    prints = {name: digest((folder / name).read_bytes()) for name in ("actor.pt", "integer.npz", "norm.npz")}
    history = [{k: v for k, v in row.items() if k != "steps_per_s"} for row in json.loads((folder / "history.json").read_text())]
    evaluation = {k: v for k, v in json.loads((folder / "eval.json").read_text()).items() if k != "train_seconds"}
    prints["history"] = digest(json.dumps(history, sort_keys=True).encode())
    prints["eval"] = digest(json.dumps(evaluation, sort_keys=True).encode())
    return prints


def main() -> None:
    for name, cfg in RUNS.items():
        print(name, json.dumps(fingerprint(cfg)), flush=True)


if __name__ == "__main__":
    main()
