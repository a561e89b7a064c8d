"""The learner's device (issue 27): how a run executes, not what it trains. No machine here has a GPU,
so these run the device path on the CPU: a run on device "cpu" (a string or a torch.device) is
bit for bit the default run, checkpoints included; batches move to the device with the indices drawn
as before; a bad device is one line and exit 2; a trial trains on a GPU only when Ray gave it one."""
import numpy as np
import pytest
import torch

from commands import refused
from qsearch import pipeline, rl
from qsearch.config import ALGO_CONFIGS, FieldError, PolicyConfig, QuantBits, SACConfig, TrainConfig
from qsearch.rl.checkpoint import FolderCheckpoints
from qsearch.rl.common import torch_device
from qsearch.rl.experience import Experience
from qsearch.search.trainable import trial_device
from services import assert_same_bundle, untimed

ENV = "InvertedPendulum-v5"


def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_names(monkeypatch):
    assert torch_device("cpu") == torch_device(torch.device("cpu")) == torch.device("cpu")
    no_cuda(monkeypatch)
    for bad in ("tpu", "meta", "cuda:x", ""):
        with pytest.raises(FieldError, match=f"device must be cpu, cuda or cuda:N, got '{bad}'"):
            torch_device(bad)
    for cuda in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(FieldError, match=r"torch sees no CUDA device here \(torch.cuda.is_available\(\) is False\)"):
            torch_device(cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert torch_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(FieldError, match="cuda:1: torch sees 1 CUDA device"):
        torch_device("cuda:1")


@pytest.mark.parametrize("device,message", [
    ("tpu", "--device must be cpu, cuda or cuda:N, got 'tpu'"),
    ("cuda", "--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)"),
])
def test_train_refuses_a_bad_device(capsys, tmp_path, monkeypatch, device, message):
    no_cuda(monkeypatch)
    err = refused(capsys, tmp_path / "b", "train", "--env", ENV, "--steps", "200", "--device", device)
    assert message in err


@pytest.mark.parametrize("gpu,ids,cuda,device,note", [
    (0.0, [], False, "cpu", None),
    (0.0, [0], True, "cpu", None),  # not asked for: never taken
    (0.25, [0], True, "cuda", None),
    (1.0, ["3"], True, "cuda", None),
    (0.25, [], True, "cpu", "resources.gpu is 0.25 but Ray assigned it none: training on the CPU"),
    (1.0, [2], False, "cpu", "resources.gpu is 1 but torch sees no CUDA device (Ray assigned GPU 2): training on the CPU"),
])
def test_trial_device(gpu, ids, cuda, device, note):
    assert trial_device(gpu, ids, cuda) == (device, note)


def test_batches_move_to_the_device_and_the_indices_do_not_change():
    """The buffer stays NumPy on the CPU and draws from its own generator; what the networks see moves.
    The meta device holds no data, so a tensor that stayed on the CPU shows."""
    cfg = TrainConfig(env_id=ENV, total_steps=100, seed=4)
    on_cpu, on_meta = Experience(cfg, 100), Experience(cfg, 100, torch.device("meta"))
    for _ in range(60):
        action = on_cpu.random_action()
        assert np.array_equal(action, on_meta.random_action())
        on_cpu.step(action)
        on_meta.step(action)
    meta = [on_meta.scale, on_meta.bias, on_meta.policy_input(), *on_meta.sample(16), *on_meta.sample_sequences(16, 4, 2)]
    assert all(t.device.type == "meta" for t in meta)
    cpu = [*on_cpu.sample(16), *on_cpu.sample_sequences(16, 4, 2)]
    assert all(t.device.type == "cpu" for t in cpu)
    assert on_meta.rb.rng.bit_generator.state == on_cpu.rb.rng.bit_generator.state


def _same_result(a, b):
    assert untimed(a.history) == untimed(b.history) and a.actor_updates == b.actor_updates
    sa, sb = a.actor.state_dict(), b.actor.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sb[k].device.type == "cpu" for k in sa)


def test_sac_on_the_cpu_device_is_the_default_run():
    cfg = TrainConfig(env_id=ENV, algo="sac", total_steps=300, seed=2, eval_every=150, eval_episodes=2,
                      policy=PolicyConfig(width=16, quant=QuantBits.from_scope("core", 3)),
                      algo_config=SACConfig(batch_size=32, learning_starts=100, critic_width=32, sigma_width=16))
    default = rl.train(cfg)
    _same_result(default, rl.train(cfg, device="cpu"))
    _same_result(default, rl.train(cfg, device=torch.device("cpu")))


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_a_recurrent_run_on_the_cpu_device_continues_exactly(algo, tmp_path):
    """Checkpoints written by a run on device "cpu" (tensors saved on the CPU) continue on
    torch.device("cpu") to the bundle of an uninterrupted run on the default device."""
    cfg = TrainConfig(env_id=ENV, algo=algo, total_steps=400, seed=3, eval_every=400, eval_episodes=1,
                      observe="positions", policy=PolicyConfig(width=8, quant=QuantBits(), encoder="gru", encoder_width=8),
                      algo_config=ALGO_CONFIGS[algo](learning_starts=150, batch_size=32, critic_width=16,
                                                     sequence_length=4, burn_in=2, critic_encoder_width=8))
    pipeline.run(cfg, tmp_path / "whole", episodes=1)
    folder = pipeline.checkpoint_folder(tmp_path / "cut")
    pipeline.run(cfg, tmp_path / "first", episodes=1, checkpoints=FolderCheckpoints(folder, 200, resume=False),
                 device="cpu")
    saved = torch.load(folder / f"step-{200:012d}" / "learner.pt", weights_only=True)
    tensors = [saved["parts"]["actor"]["parameters"][k] for k in saved["parts"]["actor"]["parameters"]]
    assert tensors and all(type(t) is torch.Tensor and t.device.type == "cpu" for t in tensors)
    pipeline.run(cfg, tmp_path / "cut", episodes=1, checkpoints=FolderCheckpoints(folder, 200, resume=True),
                 device=torch.device("cpu"))
    assert_same_bundle(tmp_path / "whole", tmp_path / "cut")
    assert_same_bundle(tmp_path / "whole", tmp_path / "first")


def test_ppo_asks_rllib_for_the_gpu(monkeypatch):
    """PPO's learner is RLlib's: a CUDA device becomes its num_gpus_per_learner (and which GPU)."""
    from qsearch.rl.ppo import algorithm_config

    cfg = TrainConfig(env_id=ENV, algo="ppo", total_steps=1000, algo_config=ALGO_CONFIGS["ppo"]())
    assert algorithm_config(cfg).num_gpus_per_learner == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    config = algorithm_config(cfg, "cuda:1")
    assert (config.num_gpus_per_learner, config.local_gpu_idx, config.num_learners) == (1, 1, 0)
