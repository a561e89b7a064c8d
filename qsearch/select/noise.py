"""Noise robustness (paper Section 3.3): return vs Gaussian noise on the normalized observation.

Each trained model is evaluated at every sigma (deterministic policy, `episodes` episodes, the torch
engine for FP32 and quantized alike); a curve is the mean and std over models of the per-model
means. Models are evaluated in parallel as Ray tasks, one per model.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

NOISE_SEED = 20_000  # evaluation episodes are seeded apart from training's and the final evaluation's


def model_curve(bundle_files: dict[str, bytes], sigmas: list[float], episodes: int, seed: int,
                log_dir: str) -> list[float]:
    """Mean return of one bundle at each sigma. The bundle comes as its files' bytes (through Ray's
    object store), so a task on another node needs no shared filesystem."""
    import torch

    from qsearch import bundle as bundles
    from qsearch.rl.envs import log_mujoco_to
    from qsearch.rl.evaluate import evaluate

    log_mujoco_to(Path(log_dir))
    torch.set_num_threads(1)  # one task per core; two threads per process are measured slower
    with tempfile.TemporaryDirectory(prefix="qsearch-noise-") as tmp:
        for name, data in bundle_files.items():
            (Path(tmp) / name).write_bytes(data)
        b = bundles.read(Path(tmp))
    policy = b.policy("torch")
    return [evaluate(policy, b.config.env_id, b.obs_norm, episodes, NOISE_SEED + seed, s, b.config.observe).mean
            for s in sigmas]


def curves(models: dict[str, list[tuple[str, int]]], sigmas: list[float], episodes: int, log_dir: Path,
           address: str | None = None) -> dict[str, dict]:
    """models: label -> [(bundle folder, seed)]. Returns label -> {sigma, mean, std, per_model}.
    MuJoCo's warnings go to log_dir (on the node that evaluates)."""
    import ray

    from qsearch import ray_session

    jobs = [(label, path, seed) for label, ms in models.items() for path, seed in ms]
    with ray_session.session(address):
        task = ray.remote(num_cpus=1)(model_curve)
        files = [ray.put({f.name: f.read_bytes() for f in Path(path).iterdir() if f.is_file()}) for _, path, _ in jobs]
        refs = [task.remote(f, list(sigmas), episodes, seed, str(log_dir)) for f, (_, _, seed) in zip(files, jobs)]
        values = ray.get(refs)
    out: dict[str, dict] = {}
    for (label, _, seed), v in zip(jobs, values):
        out.setdefault(label, {"sigma": list(sigmas), "seeds": [], "per_model": []})
        out[label]["seeds"].append(seed)
        out[label]["per_model"].append(v)
    for c in out.values():
        a = np.asarray(c["per_model"])
        c["mean"], c["std"] = a.mean(0).tolist(), a.std(0).tolist()
    return out
