"""A short quantized SAC run on InvertedPendulum-v5 visibly learns.

Within a few thousand steps SAC (FP32 as much as QAT, and CleanRL's reference loop alike) reaches
returns in the hundreds, then often sits for a while at ~40-60: the pole stays up but the cart drifts
into the end of its rail. So the test asks for a clear peak and a final return still several times a
random policy's (~5-10), not for a final 1000.

The bounds come from measured runs of this test's settings on seeds 0-5 (2026-12-05, torch reporting
AVX512; a learning outcome depends on the CPU's kernels): peaks 433, 89, 220, 407, 198, 239 and final
returns 68, 55, 55, 61, 50, 85. PEAK sits well under the lowest peak, so another machine's kernels do
not fail it, and far above what an unlearned policy reaches."""
import numpy as np

from qsearch import rl
from qsearch.config import PolicyConfig, QuantBits, SACConfig, TrainConfig
from qsearch.obs_norm import ObsNorm
from qsearch.rl.common import EVAL_SEED_OFFSET
from qsearch.rl.evaluate import evaluate

PEAK = 60.0


def test_quantized_sac_learns_inverted_pendulum():
    cfg = TrainConfig(
        env_id="InvertedPendulum-v5", algo="sac", seed=0,
        policy=PolicyConfig(width=64, quant=QuantBits.from_scope("core", 3)),
        total_steps=5_000, eval_every=1_000, eval_episodes=5,
        algo_config=SACConfig(batch_size=64, learning_starts=1_000, critic_width=64),
    )
    result = rl.train(cfg)
    returns = [row["eval_return_mean"] for row in result.history]
    print("eval returns", returns)

    rng = np.random.default_rng(0)
    random_policy = evaluate(lambda x: rng.uniform(-1, 1, (len(x), 1)), cfg.env_id, ObsNorm.identity(4),
                             episodes=5, seed=EVAL_SEED_OFFSET).mean
    assert random_policy < 15
    assert max(returns) > PEAK, returns
    assert returns[-1] > 3 * random_policy, returns
