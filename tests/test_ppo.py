"""PPO through RLlib, with real Ray, RLlib and MLflow: a QAT trial of a search on 2 env runners, a short
run that learns, RLlib checkpoints imported into bundles (QAT and FP32), and bad input refused.

Small settings keep the file near 3 minutes on 2 cores: 512-step PPO iterations of 8 minibatches."""
import dataclasses
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
import yaml
from ray import cloudpickle

from qsearch import bundle as bundles
from qsearch import ray_session
from qsearch.cli import main
from qsearch.config import PolicyConfig, PPOConfig, QuantBits, TrainConfig
from qsearch.errors import QsearchError
from qsearch.quant import integer
from qsearch.rl import ppo
from qsearch.search import space as spaces

ENV = "InvertedPendulum-v5"
SMALL = {"num_steps": 512, "num_minibatches": 8}
MODULE_STATE = "learner_group/learner/rl_module/default_policy/module_state.pkl"
MODULE_SPEC = "learner_group/learner/rl_module/default_policy/class_and_ctor_args.pkl"
FILTER_STATE = "env_runner/env_to_module_connector/MeanStdFilter/state.pkl"


def ppo_space(tmp_path, **over):
    data = {"name": "ppo_tiny", "envs": [ENV], "algo": "ppo", "steps": 2048, "seeds": [0],
            "algo_config": dict(SMALL), "eval_every": 1024, "eval_episodes": 2, "final_episodes": 3,
            "policy": {"width": 16}, "sweep": [{"bits_core": 3, "bits_in": 4}], "resources": {"cpu": 2}, **over}
    p = tmp_path / "ppo.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_search_runs_a_qat_ppo_trial_on_two_env_runners(tmp_path, capsys):
    work = tmp_path / "w"
    assert main(["search", str(ppo_space(tmp_path)), "--workdir", str(work)]) == 0
    (trial,) = json.loads((work / "trials.json").read_text())
    assert trial["status"] == "done"
    (folder,) = (work / "ray" / "ppo_tiny").glob("*/bundle")
    b = bundles.read(folder)
    assert b.config.algo == "ppo" and b.config.algo_config.env_runners == 2
    assert b.history[-1]["env_runners"] == 2  # RLlib really sampled with two runners
    assert [h["step"] for h in b.history] == [1024, 2048]
    assert b.evaluation["agreement"]["equal_outputs"] == 1.0  # the integer engine computes the torch model
    x = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)  # beyond the visited states too
    assert integer.agreement(b.actor, b.integer, [x]) == 1.0

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ppo_tiny").experiment_id],
                                "tags.`qsearch.kind` = 'trial'")
    assert run.data.params["algo"] == "ppo" and run.data.params["algo_config.env_runners"] == "2"
    assert {"eval_return_mean", "steps_per_s", "actor_loss", "final_return"} <= set(run.data.metrics)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval_return_mean")]
    assert steps == [1024, 2048]


@pytest.fixture(scope="module")
def local_ray():
    with ray_session.session():
        yield


def short_config(quant, steps, seed=0):
    return TrainConfig(env_id=ENV, algo="ppo", policy=PolicyConfig(width=16, quant=quant), total_steps=steps,
                       seed=seed, eval_every=steps, eval_episodes=3, algo_config=PPOConfig(**SMALL))


@pytest.mark.parametrize("quant", [QuantBits(bits_in=4, bits_weight=3, bits_act=3), None], ids=["qat", "fp32"])
def test_checkpoint_imports_into_a_bundle(local_ray, tmp_path, capsys, quant):
    cfg = short_config(quant, 1024)
    result = ppo.train(cfg, rllib_checkpoint=str(tmp_path / "ckpt"))
    assert main(["import", str(tmp_path / "ckpt"), "--out", str(tmp_path / "b"), "--episodes", "2"]) == 0
    b = bundles.read(tmp_path / "b")
    assert b.config == cfg  # the module carries its training configuration
    np.testing.assert_array_equal(b.obs_norm.mean, result.obs_norm.mean)
    np.testing.assert_array_equal(b.obs_norm.std, result.obs_norm.std)
    x = torch.from_numpy(b.obs_norm(np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)))
    result.actor.freeze_scales()
    with torch.no_grad():  # the learner's actor, not an env runner's copy
        assert torch.equal(b.actor(x), result.actor(x))
    assert (b.integer is None) == (quant is None)
    if quant is not None:  # the same module class with another network shape in its state: refused
        state_file = tmp_path / "ckpt" / MODULE_STATE
        state = pickle.loads(state_file.read_bytes())
        state["pi.actor.linears.0.weight"] = np.zeros((8, 4), np.float32)
        state_file.write_bytes(cloudpickle.dumps(state))  # as RLlib writes it (protocol 5)
        assert main(["import", str(tmp_path / "ckpt"), "--out", str(tmp_path / "b2")]) == 2
        err = capsys.readouterr().err.strip()
        assert "do not fit its configuration: size mismatch for linears.0.weight" in err
        assert len(err.splitlines()) == 1
        assert not (tmp_path / "b2").exists()
    if quant is None:  # an imported FP32 policy goes on to post-training quantization
        assert main(["ptq", str(tmp_path / "b"), "--bits-core", "4", "--bits-in", "8", "--calib-episodes", "1",
                     "--episodes", "1", "--out", str(tmp_path / "ptq")]) == 0


# Measured on a machine whose torch reports AVX512 (2026-12-05), this test's settings, seeds 0-5: the
# mean of the last two evaluations is 79.9, 64.7, 73.6, 146.2, 83.0, 73.7 (PPO's outcome at 8k steps
# depends on the CPU's kernels: where the test was written the final return passed 100 on seed 0, here
# it is 85.0); with learning switched off (learning rate 1e-12) it stays at 7.0 and 4.2 (seeds 0, 1).
# The bound sits well below the lowest learned figure and far above the unlearned one.
LEARNED = 40.0


def test_ppo_learns_inverted_pendulum(local_ray):
    cfg = TrainConfig(env_id=ENV, algo="ppo", policy=PolicyConfig(width=64, quant=None), total_steps=8192,
                      eval_every=2048, eval_episodes=5, algo_config=PPOConfig(num_steps=1024, num_minibatches=16))
    result = ppo.train(cfg)
    assert result.actor_updates >= 8 * 10 * 16  # 8 iterations x 10 epochs x 16 minibatches (or a few more)
    returns = [h["eval_return_mean"] for h in result.history]
    assert np.mean(returns[-2:]) > LEARNED, returns  # an untrained policy falls in ~5 steps


def test_another_modules_checkpoint_is_refused(local_ray, tmp_path, capsys):
    from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig

    algo = RLlibPPOConfig().environment(ENV).env_runners(num_env_runners=0).build_algo()
    algo.save_to_path(str(tmp_path / "other"))
    algo.stop()
    assert main(["import", str(tmp_path / "other"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()  # refused by the unpickler before it looks the class up
    assert (f"{tmp_path / 'other' / MODULE_SPEC}: refuses to load "
            "ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module.DefaultPPOTorchRLModule") in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()
    assert main(["import", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "is not an RLlib checkpoint" in capsys.readouterr().err


@pytest.fixture(scope="module")
def genuine_checkpoint(local_ray, tmp_path_factory):
    folder = tmp_path_factory.mktemp("genuine") / "ckpt"
    ppo.train(short_config(None, 512), rllib_checkpoint=str(folder))
    return folder


class RunsCode:
    """A pickle that would run `call(arg)` when loaded."""

    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("file, call", [(MODULE_SPEC, os.system), (MODULE_STATE, exec), (FILTER_STATE, os.system)],
                         ids=["module-spec-os.system", "module-state-exec", "filter-state-os.system"])
def test_a_checkpoint_pickle_that_would_run_code_is_refused(genuine_checkpoint, tmp_path, capsys, file, call):
    ckpt, marker = tmp_path / "ckpt", tmp_path / "MARKER"
    shutil.copytree(genuine_checkpoint, ckpt)
    assert main(["import", str(ckpt), "--out", str(tmp_path / "b"), "--episodes", "1"]) == 0  # the genuine one
    command = f"touch {marker}" if call is os.system else f"open({str(marker)!r}, 'w').close()"
    (ckpt / file).write_bytes(pickle.dumps({"pi.actor.linears.0.weight": RunsCode(call, command)}))
    capsys.readouterr()
    assert main(["import", str(ckpt), "--out", str(tmp_path / "b2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"qsearch: error: {ckpt / file}: refuses to load {call.__module__}.{call.__name__}: not among "
                   "what a checkpoint of qsearch's PPO module holds (unpickling it could run code)")
    assert not marker.exists()  # refused before it ran
    assert not (tmp_path / "b2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "ckpt"]


@pytest.mark.parametrize("args, message", [
    (["--algo", "ppo", "--env-runners", "0"], "env-runners must be a positive integer"),
    (["--algo", "sac", "--env-runners", "2"], "--env-runners applies to --algo ppo only"),
    (["--algo", "ppo", "--learning-starts", "10"], "--learning-starts applies to --algo sac, ddpg, td3 only, not ppo"),
])
def test_train_refuses_bad_ppo_options(tmp_path, capsys, args, message):
    assert main(["train", "--env", ENV, "--steps", "100", "--out", str(tmp_path / "b"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("over, message", [
    ({"algo_config": {"num_steps": "many"}}, "algo_config.num_steps: must be an integer"),
    ({"algo_config": {"clip_coef": "wide"}}, "algo_config.clip_coef: must be a number"),
    ({"algo_config": {"anneal_lr": 1}}, "algo_config.anneal_lr: must be true or false"),
    ({"algo_config": {"num_steps": 16, "num_minibatches": 32}}, "must be at least num_minibatches"),
    ({"algo_config": {"env_runners": 2}}, "algo_config.env_runners: is set by resources.cpu"),
    ({"resources": {"cpu": 1.5}}, "resources.cpu: a PPO trial runs one env runner per CPU"),
])
def test_search_refuses_bad_ppo_settings(tmp_path, capsys, over, message):
    assert main(["search", str(ppo_space(tmp_path, **over)), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_space_gives_ppo_one_env_runner_per_cpu(tmp_path):
    s = spaces.load(ppo_space(tmp_path, resources={"cpu": 3}))
    assert s.train_config(s.configurations[0], 0).algo_config.env_runners == 3
    with pytest.raises(QsearchError, match="env_runners must be a positive integer"):
        PPOConfig(env_runners=0)


def test_interrupted_run_continues_from_its_rllib_checkpoint(local_ray, tmp_path):
    """PPO saves RLlib's own checkpoint (module, optimizer, connector statistics, counters) and a run
    stopped after it continues from there: the steps before the checkpoint are not trained again."""
    from qsearch.rl.checkpoint import FolderCheckpoints

    cfg = short_config(QuantBits(bits_in=4, bits_weight=3, bits_act=3), 2048)
    cfg = dataclasses.replace(cfg, eval_every=1024)
    folder, seen = tmp_path / "ckpts", []

    def stop_after_the_checkpoint(m):
        seen.append(m)
        if m["step"] > 1024:
            raise KeyboardInterrupt  # as a preemption would, between two checkpoints

    with pytest.raises(KeyboardInterrupt):
        ppo.train(cfg, stop_after_the_checkpoint, FolderCheckpoints(folder, 1024, resume=False))
    assert [p.name for p in folder.iterdir()] == [f"step-{1024:012d}"]

    continued = []
    result = ppo.train(cfg, continued.append, FolderCheckpoints(folder, 1024, resume=True))
    assert [m["step"] for m in continued] == [1536, 2048]  # from the checkpoint on, not from 0
    assert [h["step"] for h in result.history] == [1024, 2048]
    assert result.history[0] == seen[1]  # the evaluation before the checkpoint, kept from it
