"""Exact continuation: a short Hopper-v5 run killed (SIGKILL) in the middle and continued with
`qsearch train --resume` gives the bundle of a run that never stopped (the same actor.pt, norm.npz and
integer.npz bytes, the same history and evaluation apart from timing), for SAC and TD3; a full disk
while a checkpoint is written leaves the previous checkpoint usable."""
import errno
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from qsearch import pipeline
from qsearch.cli import main
from qsearch.config import SACConfig
from qsearch.errors import QsearchError
from qsearch.rl.checkpoint import FolderCheckpoints
from services import BIN, ENV, assert_same_bundle

# Small networks and a learning start late enough that the first checkpoint (step 500) falls inside
# brevitas' activation-scale warm-up (300 actor updates): the hazard the raw module copy is for.
ALGO = {"sac": {"learning_starts": 300, "batch_size": 32, "critic_width": 32, "sigma_width": 16},
        "td3": {"learning_starts": 300, "batch_size": 32, "critic_width": 32}}
STEPS, EVERY = 1200, 500


def command(algo, out, *extra):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in ALGO[algo].items()]
    return [str(BIN / "qsearch"), "train", "--algo", algo, "--env", "Hopper-v5", "--steps", str(STEPS),
            "--seed", "5", "--eval-every", "600", "--episodes", "2", "--width", "16", "--scope", "core",
            "--bits", "2", *flags, "--out", str(out), *extra]


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_killed_run_continues_exactly(algo, tmp_path):
    subprocess.run(command(algo, tmp_path / "whole", "--checkpoint-every", "0"), check=True, env=ENV,
                   capture_output=True)
    # The interrupted run: SIGKILL once its first checkpoint is there, somewhere past step 500.
    cut = subprocess.Popen(command(algo, tmp_path / "cut", "--checkpoint-every", str(EVERY)), env=ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = pipeline.checkpoint_folder(tmp_path / "cut") / f"step-{EVERY:012d}"
    deadline = time.time() + 300
    while not (first / "state.json").exists():
        assert cut.poll() is None and time.time() < deadline
        time.sleep(0.05)
    cut.send_signal(signal.SIGKILL)
    cut.wait()
    assert not (tmp_path / "cut").exists()

    resumed = subprocess.run(command(algo, tmp_path / "cut", "--checkpoint-every", str(EVERY), "--resume"),
                             env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing from" in resumed.stdout and "step-0000000" in resumed.stdout
    assert_same_bundle(tmp_path / "whole", tmp_path / "cut")
    assert not pipeline.checkpoint_folder(tmp_path / "cut").exists()  # served, removed


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """The second checkpoint's write fails with ENOSPC (injected into NumPy's save, the largest
    write): one clear error, no partial folder, and the first checkpoint continues the run exactly."""
    cfg = _cfg()
    pipeline.run(cfg, tmp_path / "whole", episodes=2)

    real_savez, calls = np.savez, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_savez(*args, **kwargs)

    folder = pipeline.checkpoint_folder(tmp_path / "cut")
    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(QsearchError) as e:
        pipeline.run(cfg, tmp_path / "cut", episodes=2, checkpoints=FolderCheckpoints(folder, EVERY, resume=False))
    monkeypatch.undo()
    message = str(e.value)
    assert "\n" not in message and "No space left on device" in message and "step 1,000" in message
    assert "previous one is intact" in message and str(folder / f"step-{EVERY:012d}") in message
    assert [p.name for p in folder.iterdir()] == [f"step-{EVERY:012d}"]  # nothing half-written

    pipeline.run(cfg, tmp_path / "cut", episodes=2, checkpoints=FolderCheckpoints(folder, EVERY, resume=True))
    assert_same_bundle(tmp_path / "whole", tmp_path / "cut")


def _cfg():
    from qsearch.config import PolicyConfig, QuantBits, TrainConfig

    return TrainConfig(env_id="Hopper-v5", algo="sac", total_steps=STEPS, seed=5, eval_every=600, eval_episodes=2,
                       policy=PolicyConfig(width=16, quant=QuantBits(bits_weight=2, bits_act=2)),
                       algo_config=SACConfig(**ALGO["sac"]))


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_a_recurrent_run_continues_exactly(algo, tmp_path):
    """A recurrent learner's checkpoint also holds the acting state and the buffer's episode records:
    continued from its last checkpoint (step 400, seven steps into an episode, a non-zero state at 8
    bits), the run ends where one that never stopped does."""
    from qsearch.config import ALGO_CONFIGS, PolicyConfig, QuantBits, TrainConfig

    cfg = TrainConfig(env_id="InvertedPendulum-v5", algo=algo, total_steps=500, seed=3, eval_every=500,
                      eval_episodes=1, observe="positions",
                      policy=PolicyConfig(width=8, quant=QuantBits(), encoder="gru", encoder_width=8),
                      algo_config=ALGO_CONFIGS[algo](learning_starts=200, batch_size=32, critic_width=16,
                                                     sequence_length=4, burn_in=2, critic_encoder_width=8))
    pipeline.run(cfg, tmp_path / "whole", episodes=1)
    folder = pipeline.checkpoint_folder(tmp_path / "cut")
    pipeline.run(cfg, tmp_path / "first", episodes=1, checkpoints=FolderCheckpoints(folder, 200, resume=False))
    assert sorted(p.name for p in folder.iterdir()) == [f"step-{200:012d}", f"step-{400:012d}"]
    pipeline.run(cfg, tmp_path / "cut", episodes=1, checkpoints=FolderCheckpoints(folder, 200, resume=True))
    assert_same_bundle(tmp_path / "whole", tmp_path / "cut")


def test_train_resume_refusals(tmp_path, capsys):
    base = ["train", "--env", "InvertedPendulum-v5", "--steps", "200", "--out", str(tmp_path / "b")]
    assert main(base + ["--resume"]) == 2
    assert "--resume: no checkpoint in" in capsys.readouterr().err
    assert main(base + ["--checkpoint-every", "-5"]) == 2
    assert "--checkpoint-every must be 0 (no checkpoints) or a number" in capsys.readouterr().err
    (pipeline.checkpoint_folder(tmp_path / "b") / f"step-{100:012d}").mkdir(parents=True)
    (pipeline.checkpoint_folder(tmp_path / "b") / f"step-{100:012d}" / "state.json").write_text("{}")
    assert main(base) == 2  # an interrupted run's checkpoints are never overwritten silently
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 2  # a folder that is not a checkpoint: one line
    err = capsys.readouterr().err
    assert "not a qsearch learner checkpoint" in err and err.count("\n") == 1
