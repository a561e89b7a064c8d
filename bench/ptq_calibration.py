"""Why INT8 PTQ fell over, and what each calibration gives: for FP32 bundles, each activation
quantizer's range under each calibration, how much of the FP32 network's values it clips on rollouts
with exploration noise on the evaluation seeds (perturbed states a deployed policy must recover
from, in episodes no calibration saw), and the INT8 policy's return with the integer engine on the
evaluation seeds.

"before" is the calibration qsearch ptq had until 2026-12: deterministic rollouts, brevitas' 99.999th
percentile per 256-row batch, averaged over the batches. It is rebuilt here only to be measured.

    PYTHONPATH=. .venv/bin/python bench/ptq_calibration.py BUNDLE [BUNDLE ...] [--json OUT]
    PYTHONPATH=. .venv/bin/python bench/ptq_calibration.py --report docs/results/ptq_calibration.json
"""
import argparse
import json

import numpy as np
import torch
from brevitas.graph.calibrate import calibration_mode
from torch import nn

from qsearch import bundle as bundles
from qsearch.config import QuantBits
from qsearch.deploy import ptq
from qsearch.quant import fastpath, integer
from qsearch.quant.actor import QuantActor
from qsearch.rl.common import EVAL_SEED_OFFSET
from qsearch.rl.evaluate import evaluate

BITS = QuantBits(8, 8, 8, 8)
CALIBRATIONS = [  # (name, action noise, statistic)
    ("before: deterministic, percentile per batch", 0.0, "per-batch"),
    ("deterministic, percentile", 0.0, "percentile"),
    ("deterministic, max", 0.0, "max"),
    ("noise 0.1, percentile", 0.1, "percentile"),
    ("noise 0.1, max (default)", 0.1, "max"),
]


def quantize_before(fp32: QuantActor, observations: np.ndarray) -> QuantActor:
    actor = ptq.with_weights(fp32, BITS)
    with torch.no_grad(), calibration_mode(actor):
        for batch in torch.from_numpy(observations).tensor_split(max(1, round(len(observations) / 256))):
            actor.quant_forward(batch)
    return actor.eval()


def ranges(actor: QuantActor) -> list[float]:
    """each activation quantizer's threshold: the largest |value| it represents"""
    return [float(fastpath.scaling_impl(q).value.detach()) for q in actor.act_quantizers()]


def fp32_values(fp32: QuantActor, x: np.ndarray) -> list[np.ndarray]:
    """the FP32 network's values where the quantizers sit: input, each hidden ReLU, the pre-tanh output"""
    linears = [m for m in fp32.net if isinstance(m, nn.Linear)]
    h, out = torch.from_numpy(x), [x]
    with torch.no_grad():
        for lin in linears[:-1]:
            h = torch.relu(lin(h))
            out.append(h.numpy())
        out.append(linears[-1](h).numpy())
    return out


def measure(path: str, episodes: int) -> dict:
    b = bundles.read(path)
    seed = b.config.seed + EVAL_SEED_OFFSET
    # the evaluation seeds: episodes no calibration saw
    perturbed = fp32_values(b.actor, ptq.calibration_observations(b, episodes, 0.1, seed=seed))
    rows = []
    for name, noise, stat in CALIBRATIONS:
        x = ptq.calibration_observations(b, episodes, noise)
        q = quantize_before(b.actor, x) if stat == "per-batch" else ptq.quantize(b.actor, BITS, x, stat)
        limits = ranges(q)
        clipped = [float(np.mean(np.abs(v) > lim)) for v, lim in zip(perturbed, limits)]
        r = evaluate(integer.extract(q, b.obs_norm).act, b.config.env_id, b.obs_norm, 10, seed)
        rows.append({"calibration": name, "ranges": limits, "clipped_perturbed": clipped,
                     "int8_return": r.mean, "int8_std": r.std})
        print(f"{path}: {name}: ranges {['%.3g' % v for v in limits]}, clipped on perturbed rollouts "
              f"{['%.1f%%' % (100 * c) for c in clipped]}, INT8 return {r.mean:.1f} +- {r.std:.1f}", flush=True)
    largest = [float(np.abs(v).max()) for v in perturbed]
    return {"bundle": path, "env": b.config.env_id, "seed": b.config.seed, "steps": b.config.total_steps,
            "fp32_return": b.evaluation["torch"]["mean"], "largest_perturbed": largest, "calibrations": rows}


def markdown(results: list[dict]) -> str:
    lines = ["| bundle | calibration | output range (pre-tanh) | output clipped (perturbed) | worst layer clipped | INT8 return |",
             "|---|---|---|---|---|---|"]
    for res in results:
        for row in res["calibrations"]:
            lines.append(f"| {res['env']} seed {res['seed']}, {res['steps'] // 1000}k (FP32 {res['fp32_return']:.1f}) "
                         f"| {row['calibration']} | {row['ranges'][-1]:.3g} (largest {res['largest_perturbed'][-1]:.3g}) "
                         f"| {100 * row['clipped_perturbed'][-1]:.1f}% | {100 * max(row['clipped_perturbed']):.1f}% "
                         f"| {row['int8_return']:.1f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="*")
    p.add_argument("--episodes", type=int, default=10, help="calibration episodes (qsearch ptq's default)")
    p.add_argument("--json", help="write the measurements here")
    p.add_argument("--report", metavar="JSON", help="only print the table of measurements written by --json")
    args = p.parse_args()
    if args.report:
        with open(args.report) as f:
            print(markdown(json.load(f)))
        return
    results = [measure(path, args.episodes) for path in args.bundles]
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
