import json

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


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Hopper-v5",
                                    "Walker2d-v5", "HalfCheetah-v5", "Hopper-v4"])
def test_partial_observations_hold_the_positions_or_the_velocities(env_id):
    """observe: positions keeps what the simulator's joint positions give (for InvertedDoublePendulum
    their sines and cosines), velocities its joint velocities, read from MuJoCo's own state."""
    import mujoco  # noqa: F401 (the envs need it)

    positions, velocities = make_env(env_id, 3, "positions"), make_env(env_id, 3, "velocities")
    for env in (positions, velocities):
        env.reset(seed=3)
        for _ in range(5):
            env.step(np.full(env.action_space.shape, 0.3, np.float32))
    data = positions.unwrapped.data
    qpos, qvel = data.qpos, data.qvel
    if env_id.startswith("InvertedDoublePendulum"):
        expected = np.concatenate([qpos[:1], np.sin(qpos[1:]), np.cos(qpos[1:])])
    elif env_id.startswith("InvertedPendulum"):
        expected = qpos
    else:
        expected = qpos[1:]  # the current x position is left out, as gymnasium does by default
    obs_p = positions.unwrapped._get_obs()[list(positions.indices)]
    assert np.allclose(obs_p, expected) and positions.observation_space.shape == expected.shape
    obs_v = velocities.unwrapped._get_obs()[list(velocities.indices)]
    assert np.allclose(obs_v, np.clip(velocities.unwrapped.data.qvel, -10, 10))
    assert qvel.shape == velocities.observation_space.shape


def test_partial_observation_refused_where_no_index_map_exists():
    with pytest.raises(QsearchError, match=r"^observe: positions is defined for the v4/v5 MuJoCo tasks .*, not Ant-v5$"):
        make_env("Ant-v5", 0, "positions")


def test_a_partially_observed_policy_is_trained_recorded_and_evaluated_on_what_it_saw(tmp_path, capsys):
    from qsearch import bundle as bundles
    from qsearch import trial_record as record
    from qsearch.cli import main

    out = tmp_path / "b"
    assert main(["train", "--env", "InvertedPendulum-v5", "--observe", "positions", "--steps", "300",
                 "--eval-every", "300", "--episodes", "2", "--width", "8", "--learning-starts", "100",
                 "--batch-size", "32", "--out", str(out)]) == 0
    b = bundles.read(out)
    assert b.config.observe == "positions" and b.actor.obs_dim == 2 and b.obs_norm.mean.shape == (2,)
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "2", "--json"]) == 0  # evaluated on positions, as trained
    assert main(["export", str(out), "--format", "json", "--out", str(tmp_path / "j")]) == 0
    exported = json.loads((tmp_path / "j" / "policy.json").read_text())
    assert (exported["observe"], exported["observation_indices"], exported["obs_dim"]) == ("positions", [0, 1], 2)
    # Trials recorded before `observe` existed keep their identity: "all" is what they did.
    params = record.trial_params(b.config, "label", 2)
    assert params["observe"] == "positions"
    everything = {**params, "observe": "all"}
    assert record.trial_key(everything) == record.trial_key({k: v for k, v in everything.items() if k != "observe"})
    assert record.trial_key(params) != record.trial_key(everything)

    assert main(["train", "--env", "Ant-v5", "--observe", "velocities", "--steps", "300", "--out",
                 str(tmp_path / "ant")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["train", "--env", "InvertedPendulum-v5", "--algo", "ppo", "--observe", "velocities",
                 "--steps", "300", "--out", str(tmp_path / "ppo")]) == 2
    assert "--observe applies to sac, ddpg and td3" in capsys.readouterr().err
