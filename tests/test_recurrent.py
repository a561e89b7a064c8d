"""Recurrent policies end to end: a short recurrent SAC run learns a position-only task, its integer
engine equals the QAT model and its exported C the engine at every step of whole episodes, INT8 PTQ of an FP32 recurrent policy, the
MLflow model carries the state, and what cannot carry it refuses in one line."""
import numpy as np
import pytest

from qsearch import bundle as bundles
from qsearch.deploy.mlflow_model import act
from qsearch.deploy import c_export, stateful
from qsearch.policy import Recording, reset
from qsearch.rl.envs import make_env
from qsearch.rl.evaluate import evaluate
from qsearch.quant import integer
from commands import refused, run

ENV = "InvertedPendulum-v5"
SHORT = ["--sequence-length", "8", "--burn-in", "4", "--batch-size", "128"]  # windows of 12 steps: fast


@pytest.fixture(scope="module")
def qat(tmp_path_factory):
    """A 4-bit QAT GRU policy trained by `qsearch train` on the pendulum's positions only."""
    out = tmp_path_factory.mktemp("qat") / "b"
    from qsearch.cli import main

    assert main(["train", "--env", ENV, "--observe", "positions", "--encoder", "gru", "--encoder-width", "16",
                 "--width", "32", "--scope", "core", "--bits", "4", "--steps", "2000", "--learning-starts", "500",
                 "--eval-every", "500", "--episodes", "3", *SHORT, "--out", str(out)]) == 0
    return bundles.read(out)


def test_a_recurrent_sac_run_learns_the_pendulum_from_positions(qat):
    returns = [row["eval_return_mean"] for row in qat.history]
    # Untrained (step 500, the end of the random actions) it falls within ~12 steps, and an MLP on
    # positions stays there for 20,000 steps (docs/results/recurrent.md); 1,500 steps of learning
    # balanced it ~80 steps here. A generous bound.
    assert returns[0] < 30 and max(returns[1:]) > 50, returns
    assert qat.config.policy.encoder == "gru" and qat.integer.recurrent
    assert qat.evaluation["int"]["mean"] > 40


@pytest.fixture(scope="module")
def episodes(qat):
    """The raw observations of 2 whole episodes of the integer policy, as a control loop feeds them."""
    env, policy, out = make_env(ENV, 7, observe="positions"), qat.integer.policy(), []
    for i in range(2):
        obs, _ = env.reset(seed=7 + i)
        reset(policy)
        rows, done = [], False
        while not done:
            rows.append(obs)
            action = policy(qat.obs_norm(obs)[None])[0] * qat.action_scale + qat.action_bias
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        out.append(np.array(rows, np.float32))
    assert sum(map(len, out)) > 100  # whole episodes of a policy that balances a while
    return out


def test_the_engine_equals_the_qat_model_at_every_step_of_whole_episodes(qat, episodes):
    for episode in episodes:
        xs = qat.obs_norm(episode)[:, None]  # (T, 1, obs_dim): one stream
        want = integer.reference_sequence(qat.actor, qat.integer, xs)
        state = qat.integer.initial_state(1)
        for x, w in zip(xs, want):
            outs = qat.integer.run_int(qat.integer.quantize_normalized(x), state)
            state = qat.integer.next_state(outs)
            for got, ref in zip(outs, w, strict=True):
                np.testing.assert_array_equal(got, ref)


def test_the_c_export_equals_the_engine_at_every_step_of_whole_episodes(qat, episodes, tmp_path):
    """The same episodes through the exported C on this host, reset at each episode's start and the
    state carried: every step's integers (input, output, action, state) equal the engine's."""
    (tmp_path / "src").mkdir()
    c_export.write_c(qat.integer, qat.action_scale, qat.action_bias, tmp_path / "src")
    exe = c_export.compile_harness(tmp_path / "src", tmp_path / "harness")
    obs = np.concatenate(episodes)
    starts = np.concatenate([np.arange(len(e)) == 0 for e in episodes])
    rows = stateful.host_rows(qat.integer, exe, obs, starts)
    stateful.compare(qat.integer, qat.action_scale, qat.action_bias, obs, starts, rows, "the host build")
    assert np.unique(rows["h"]).size > 4  # the state moved


def test_the_mlflow_model_runs_a_call_as_one_episode_from_its_start(qat):
    obs = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    policy = qat.integer.policy()
    stepped = np.array([policy(qat.obs_norm(o)[None])[0] for o in obs]) * qat.action_scale + qat.action_bias
    np.testing.assert_array_equal(act(qat, obs), stepped.astype(np.float32))
    np.testing.assert_array_equal(act(qat, obs[:5]), act(qat, obs)[:5])  # each call starts from the reset
    alone = np.concatenate([act(qat, o[None]) for o in obs])  # each row from the reset
    assert not np.array_equal(alone, act(qat, obs))  # the state matters


def test_what_cannot_carry_the_state_refuses_it_in_one_line(qat, tmp_path, capsys):
    for fmt in ("qonnx", "finn", "verilog"):
        err = refused(capsys, tmp_path / fmt, "export", qat.path, "--format", fmt)
        assert "holds a recurrent policy (a GRU encoder)" in err
    code, _, err = run(capsys, "hw", qat.path, "--out", tmp_path / "hw")
    assert code == 2 and err.count("\n") == 1 and "recurrent" in err
    err = refused(capsys, tmp_path / "ppo", "train", "--env", ENV, "--algo", "ppo", "--encoder", "gru", "--steps", "300")
    assert "--encoder gru applies to sac, ddpg and td3" in err


def test_int8_ptq_of_an_fp32_recurrent_policy(tmp_path, capsys):
    """Böhm et al.'s setting: an FP32 GRU policy quantized to INT8 acts like the FP32 one."""
    fp32 = tmp_path / "fp32"
    assert run(capsys, "train", "--env", ENV, "--observe", "positions", "--encoder", "gru", "--encoder-width", "16",
               "--width", "32", "--fp32", "--steps", "300", "--learning-starts", "100", "--eval-every", "300",
               "--episodes", "1", *SHORT, "--out", fp32)[0] == 0
    code, stdout, _ = run(capsys, "ptq", fp32, "--bits-core", "8", "--bits-in", "8", "--calib-episodes", "2",
                          "--episodes", "1", "--out", tmp_path / "int8")
    assert code == 0, stdout
    src, b = bundles.read(fp32), bundles.read(tmp_path / "int8")
    assert b.integer.recurrent and b.config.policy.encoder == "gru" and b.actor.cfg.quant.bits_weight == 8
    recording = Recording(src.policy("torch"))
    evaluate(recording, ENV, src.obs_norm, 1, seed=3, observe="positions")
    xs = np.array(recording.episodes[0], np.float32)
    fp32_actions = np.array(_stream(src.policy("torch"), xs))
    int8_actions = np.array(_stream(b.policy("int"), xs))
    assert np.abs(int8_actions - fp32_actions).max() < 0.1  # INT8 keeps the FP32 policy's actions
    want = integer.reference_sequence(b.actor, b.integer, xs[:, None])
    state = b.integer.initial_state(1)
    for x, w in zip(xs[:, None], want):
        outs = b.integer.run_int(b.integer.quantize_normalized(x), state)
        state = b.integer.next_state(outs)
        np.testing.assert_array_equal(outs[-1], w[-1])


def _stream(policy, xs: np.ndarray) -> list:
    """A policy's actions over one episode's observations, from its reset."""
    policy.reset()
    return [policy(x[None])[0] for x in xs]
