"""Each learner runs a few hundred steps, FP32 and quantized, on a quick MuJoCo task."""
import math

import numpy as np
import pytest
import torch

from qsearch import rl
from qsearch.config import DDPGConfig, PolicyConfig, QuantBits, SACConfig, TD3Config, TrainConfig
from qsearch.errors import QsearchError
from qsearch.quant.actor import QuantActor
from qsearch.quant.fastpath import scaling_impl
from qsearch.rl.common import QEnsemble, actor_adam, sync_warmup, target_copy
from qsearch.rl.evaluate import evaluate, torch_policy

ENV = "InvertedPendulum-v5"
STEPS, LEARNING_STARTS = 300, 100
SMALL = {
    "sac": SACConfig(batch_size=32, learning_starts=LEARNING_STARTS, critic_width=32, sigma_width=16),
    "ddpg": DDPGConfig(batch_size=32, learning_starts=LEARNING_STARTS, critic_width=32),
    "td3": TD3Config(batch_size=32, learning_starts=LEARNING_STARTS, critic_width=32),
}
Q3 = QuantBits.from_scope("core", 3)


def small_config(algo, quant, seed=0, steps=STEPS):
    return TrainConfig(env_id=ENV, algo=algo, policy=PolicyConfig(width=32, quant=quant), total_steps=steps,
                       seed=seed, eval_every=150, eval_episodes=2, algo_config=SMALL[algo])


def counters(actor):
    """brevitas' warm-up counters, one per activation quantizer."""
    return [scaling_impl(q).counter for q in actor.act_quantizers()]


def expected_updates(algo):
    """Actor updates: every other learning step; SAC makes policy_frequency (2) of them at once."""
    steps = [s for s in range(LEARNING_STARTS + 1, STEPS) if s % 2 == 0]
    return len(steps) * (2 if algo == "sac" else 1)


@pytest.mark.parametrize("algo", ["sac", "ddpg", "td3"])
@pytest.mark.parametrize("quant", [None, Q3], ids=["fp32", "q3"])
def test_learner_runs(algo, quant):
    reports = []
    result = rl.train(small_config(algo, quant), progress=reports.append)

    assert isinstance(result.actor, QuantActor) and not result.actor.training
    assert result.actor_updates == expected_updates(algo)
    assert [row["step"] for row in result.history] == [150, 300]
    for row in result.history:
        assert math.isfinite(row["eval_return_mean"]) and row["eval_return_std"] >= 0
        assert math.isfinite(row["qf_loss"]) and math.isfinite(row["actor_loss"]) and row["steps_per_s"] > 0
    assert ("alpha" in result.history[-1]) == (algo == "sac")
    assert [r["step"] for r in reports] == [150, 300]  # every evaluation (and every 1,000 steps)
    assert result.obs_norm.mean.shape == (4,) and (result.obs_norm.std > 0).all()
    assert result.action_scale.dtype == np.float32 and result.action_scale.tolist() == [3.0]
    assert result.action_bias.tolist() == [0.0]
    assert result.train_seconds > 0

    if quant is not None:
        # brevitas' warm-up counts training-mode calls: exactly the actor updates (fewer than its 300),
        # none from acting, target computation or evaluation
        assert counters(result.actor) == [result.actor_updates] * 4
        evaluate(torch_policy(result.actor), ENV, result.obs_norm, episodes=1, seed=0)
        assert counters(result.actor) == [result.actor_updates] * 4


def test_same_seed_same_result():
    a = rl.train(small_config("sac", Q3, seed=3, steps=200))
    b = rl.train(small_config("sac", Q3, seed=3, steps=200))
    assert [r["eval_return_mean"] for r in a.history] == [r["eval_return_mean"] for r in b.history]
    assert [r["qf_loss"] for r in a.history] == [r["qf_loss"] for r in b.history]
    for p, q in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(p, q)


def test_sync_warmup_gives_target_the_scales():
    torch.manual_seed(0)
    actor = QuantActor(4, 1, PolicyConfig(width=16, quant=Q3)).eval()
    target = target_copy(actor)
    x = torch.randn(64, 4) * 3
    for n in (5, 301):  # during the warm-up, and past it (the scales become parameters)
        actor.train()
        for _ in range(n):
            actor(x)
        actor.eval()
        sync_warmup(target, actor)
        assert counters(target) == counters(actor)
        with torch.no_grad():
            assert torch.equal(target(x), actor(x))


def test_ensemble_matches_separate_critics():
    torch.manual_seed(0)
    qf = QEnsemble(5, 2, 8, n=2)
    obs, act = torch.randn(7, 5), torch.randn(7, 2)
    out = qf(obs, act)
    assert out.shape == (2, 7)
    for i in range(2):
        x = torch.cat([obs, act], 1)
        h = torch.relu(x @ qf.w1[i] + qf.b1[i])
        h = torch.relu(h @ qf.w2[i] + qf.b2[i])
        torch.testing.assert_close(out[i], (h @ qf.w3[i] + qf.b3[i]).squeeze(-1))
    torch.testing.assert_close(qf(obs, act, n=1), out[:1])


def test_acting_sees_each_actor_update():
    """The QAT actor's no-grad path caches its quantized weights until a parameter's version changes,
    so the actor's optimizer must bump versions (torch's fused Adam does not)."""
    torch.manual_seed(0)
    actor = QuantActor(4, 1, PolicyConfig(width=16, quant=Q3))
    x = torch.randn(32, 4)
    actor.train()
    for _ in range(301):  # past the warm-up, onto the fast path and its cache
        actor(x)
    actor.eval()
    opt = actor_adam(actor.parameters(), 1e-2)
    with torch.no_grad():
        before = actor(x)
    actor(x).square().sum().backward()
    opt.step()
    with torch.no_grad():
        after = actor(x)
    assert not torch.equal(after, before)
    assert torch.equal(after, actor(x).detach())  # the grad-enabled path never caches


@pytest.mark.parametrize("algo", ["sac", "ddpg"])
def test_divergence_is_a_one_line_error(algo):
    huge = {"sac": dict(q_lr=1e8, policy_lr=1e8), "ddpg": dict(learning_rate=1e8)}[algo]
    args = type(SMALL[algo])(**{**SMALL[algo].__dict__, **huge})
    cfg = TrainConfig(env_id=ENV, algo=algo, policy=PolicyConfig(width=16, quant=None), total_steps=2000,
                      eval_every=10**6, algo_config=args)
    with pytest.raises(QsearchError, match=r"^training diverged: .* is .* at step \d+$"):
        rl.train(cfg)
