import numpy as np
import pytest

from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.rl.envs import action_bias, action_scale, check_env, make_env
from qsearch.rl.evaluate import evaluate


def test_check_env_unknown_id():
    with pytest.raises(QsearchError, match=r"^unknown environment id 'Foo-v0'$"):
        check_env("Foo-v0")


def test_check_env_suggests_close_id():
    with pytest.raises(QsearchError, match="did you mean 'Hopper-v5'"):
        check_env("hopper-v5")


def test_check_env_discrete():
    with pytest.raises(QsearchError) as e:
        check_env("CartPole-v1")
    expected = "CartPole-v1 has a Discrete action space; qsearch needs a continuous Box action space"
    assert str(e.value) == expected
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "InvertedPendulum-v5"])
def test_make_env(env_id):
    check_env(env_id)
    env = make_env(env_id, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert np.isfinite(obs).all() and np.isfinite(reward)
    env.close()


def test_action_affine_map():
    env = make_env("InvertedPendulum-v5", 0)  # actions in [-3, 3]
    scale, bias = action_scale(env.action_space), action_bias(env.action_space)
    assert scale.dtype == np.float32 and bias.dtype == np.float32
    np.testing.assert_allclose(-1 * scale + bias, env.action_space.low)
    np.testing.assert_allclose(1 * scale + bias, env.action_space.high)


def _linear_policy(obs_dim, act_dim):
    w = np.random.default_rng(1).normal(size=(obs_dim, act_dim)).astype(np.float32)
    return lambda x: np.tanh(x @ w)


def test_evaluate_deterministic_and_noise_changes_returns():
    norm = ObsNorm.identity(11)
    policy = _linear_policy(11, 3)
    a = evaluate(policy, "Hopper-v5", norm, episodes=3, seed=5)
    b = evaluate(policy, "Hopper-v5", norm, episodes=3, seed=5)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert a.mean == pytest.approx(a.returns.mean()) and a.std == pytest.approx(a.returns.std())
    assert len(set(a.returns.tolist())) > 1  # episodes are seeded seed, seed+1, ...
    noisy = evaluate(policy, "Hopper-v5", norm, episodes=3, seed=5, noise_sigma=0.3)
    assert not np.array_equal(noisy.returns, a.returns)
    again = evaluate(policy, "Hopper-v5", norm, episodes=3, seed=5, noise_sigma=0.3)
    np.testing.assert_array_equal(noisy.returns, again.returns)  # the noise is seeded too
