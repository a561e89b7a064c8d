"""Where the actor's output quantizer starts: the range brevitas' warm-up statistic gives it (the
moving 99.999th percentile of |output| over the first 300 actor updates) and the range it starts
learning from (at least layers.OutputRange.MIN_START), for MLP actors on five tasks and the recurrent
actor of docs/results/recurrent.md. Each run is qsearch's SAC up to the update that ends the warm-up
(learning from step 1,000), so the statistic is the one a real run takes.

    PYTHONPATH=. .venv/bin/python bench/output_range_start.py     # ~4 minutes on one core

Measured 2026-12-06 (seed 0; deterministic):

| task | observe | actor | bits | warm-up statistic | learning starts from |
|---|---|---|---|---|---|
| InvertedPendulum-v5 | all | 2x256 | core 2 | 1.255 | 1.255 |
| InvertedPendulum-v5 | all | 2x64 | core 2 | 1.233 | 1.233 |
| Hopper-v5 | all | 2x256 | core 3 | 0.473 | 0.473 |
| Hopper-v5 | all | 2x64 | output 2 | 0.395 | 0.395 |
| HalfCheetah-v5 | all | 2x256 | core 8 | 0.600 | 0.600 |
| Pendulum-v1 | all | 2x256 | core 2 | 0.398 | 0.398 |
| Walker2d-v5 | all | 2x32 | core 2 | 0.436 | 0.436 |
| InvertedPendulum-v5 | positions | GRU32 + 2x256 | core 8 | 0.158 | 0.250 |
| InvertedPendulum-v5 | positions | GRU32 + 2x256 | core 2 | 0.007 | 0.250 |

Why it matters (layers.OutputRange): Adam moves a learned range by about its learning rate per
update, so a range that starts near zero can be taken through it within a few hundred updates.
"""
from __future__ import annotations

from qsearch.config import PolicyConfig, QuantBits, SACConfig, TrainConfig
from qsearch.quant.layers import OutputRange
from qsearch.rl import sac

LEARNING_STARTS, WARM_UP = 1_000, 300
# (task, observe, MLP width, scope, bits, GRU units or None)
RUNS = [
    ("InvertedPendulum-v5", "all", 256, "core", 2, None),
    ("InvertedPendulum-v5", "all", 64, "core", 2, None),
    ("Hopper-v5", "all", 256, "core", 3, None),
    ("Hopper-v5", "all", 64, "output", 2, None),
    ("HalfCheetah-v5", "all", 256, "core", 8, None),
    ("Pendulum-v1", "all", 256, "core", 2, None),
    ("Walker2d-v5", "all", 32, "core", 2, None),
    ("InvertedPendulum-v5", "positions", 256, "core", 8, 32),
    ("InvertedPendulum-v5", "positions", 256, "core", 2, 32),
]


def output_range(env_id, observe, width, scope, bits, gru) -> tuple[float, float]:
    """(brevitas' statistic, the range learning starts from) of one run's output quantizer, taken when
    the warm-up ends."""
    seen = []
    init_scale = OutputRange.init_scale

    def record(impl):
        init_scale(impl)
        seen.append((float(impl.buffer), float(impl.value.detach())))

    policy = PolicyConfig(width=width, quant=QuantBits.from_scope(scope, bits),
                          **({"encoder": "gru", "encoder_width": gru} if gru else {}))
    cfg = TrainConfig(env_id=env_id, policy=policy, observe=observe, seed=0,
                      total_steps=LEARNING_STARTS + 2 * WARM_UP, eval_every=10**9, eval_episodes=1,
                      algo_config=SACConfig(learning_starts=LEARNING_STARTS))
    OutputRange.init_scale = record
    try:
        sac.train(cfg)
    finally:
        OutputRange.init_scale = init_scale
    return seen[0]


def main() -> None:
    print("| task | observe | actor | bits | warm-up statistic | learning starts from |")
    print("|---|---|---|---|---|---|")
    for env_id, observe, width, scope, bits, gru in RUNS:
        stat, start = output_range(env_id, observe, width, scope, bits, gru)
        actor = f"GRU{gru} + 2x{width}" if gru else f"2x{width}"
        print(f"| {env_id} | {observe} | {actor} | {scope} {bits} | {stat:.3f} | {start:.3f} |", flush=True)


if __name__ == "__main__":
    main()
