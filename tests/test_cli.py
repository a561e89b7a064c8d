"""The command line: bad input gets one clear line on stderr and exit code 2, and nothing is written."""
import json
import subprocess
import sys

import pytest

from commands import run



TRAIN = ["train", "--algo", "sac", "--width", "8", "--steps", "300"]


@pytest.mark.parametrize("args,message", [
    (["--env", "NoSuchEnv-v9"], "unknown environment id 'NoSuchEnv-v9'"),
    (["--env", "CartPole-v1"], "continuous Box action space"),
    (["--env", "Hopper-v5", "--bits-in", "9"], "--bits-in must be at most 8, got 9"),
    (["--env", "Hopper-v5", "--scope", "core", "--bits", "1"], "--bits must be at least 2, got 1"),
    (["--env", "Hopper-v5", "--scope", "middle", "--bits", "3"], "invalid choice: 'middle'"),
    (["--env", "Hopper-v5", "--fp32", "--bits-act", "3"], "--fp32 cannot be combined"),
    (["--env", "Hopper-v5", "--scope", "core"], "--scope and --bits go together"),
    (["--env", "Hopper-v5", "--width", "0"], "--width must be a positive integer"),
    (["--env", "Hopper-v5", "--steps", "0"], "--steps must be a positive integer"),
    (["--env", "Hopper-v5", "--steps", "many"], "invalid int value: 'many'"),
    (["--env", "Hopper-v5", "--learning-starts", "-1"], "--learning-starts must be >= 0, got -1"),
    (["--env", "Hopper-v5", "--seed", "-1"], "--seed must be >= 0, got -1"),
])
def test_train_bad_input(capsys, tmp_path, args, message):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, *TRAIN, "--out", str(out), *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_eval_bad_input(capsys, tmp_path):
    code, _, err = run(capsys, "eval", str(tmp_path / "nope"))
    assert code == 2 and "neither a bundle folder nor a run id" in err and err.count("\n") == 1
    # a tracking URI naming a store that does not exist: refused, and nothing is created
    code, _, err = run(capsys, "eval", "deadbeef", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1 and not (tmp_path / "none.db").exists()
    (tmp_path / "junk").mkdir()
    code, _, err = run(capsys, "eval", str(tmp_path / "junk"))
    assert code == 2 and "not a qsearch bundle" in err
    code, _, err = run(capsys, "eval", str(tmp_path / "junk"), "--episodes", "0")
    assert code == 2 and "--episodes" in err


def test_entry_point_exit_code(tmp_path):
    """The installed command itself: exit 2, one line, no traceback."""
    p = subprocess.run([sys.executable, "-m", "qsearch.cli", "eval", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_train_then_eval(capsys, tmp_path):
    out = tmp_path / "b"
    code, stdout, _ = run(capsys, "train", "--env", "InvertedPendulum-v5", "--algo", "td3", "--scope", "all",
                          "--bits", "4", "--width", "16", "--steps", "400", "--learning-starts", "200",
                          "--eval-every", "200", "--episodes", "2", "--out", str(out))
    assert code == 0 and "integer-engine agreement" in stdout
    for engine in ("torch", "int"):
        code, stdout, _ = run(capsys, "eval", str(out), "--episodes", "2", "--engine", engine, "--json")
        result = json.loads(stdout)
        assert code == 0 and result["engine"] == engine and len(result["returns"]) == 2
    code, _, err = run(capsys, "train", "--env", "InvertedPendulum-v5", "--width", "8", "--steps", "10",
                       "--out", str(out))
    assert code == 2 and "--force" in err  # an existing bundle is not replaced silently


def test_demo_and_search_refuse_before_starting(capsys, tmp_path):
    # bad hardware targets are refused before the selection's searches, not after them
    code, _, err = run(capsys, "demo", "--targets", "-5", "--workdir", str(tmp_path / "demo"))
    assert code == 2 and "targets must be positive" in err and not (tmp_path / "demo").exists()
    code, _, err = run(capsys, "search", "search_spaces/selection_pendulum.yaml", "--workdir", str(tmp_path / "s"))
    assert code == 2 and "this is a selection space" in err and "qsearch select" in err


def test_mujoco_log_goes_to_the_runs_folder(capsys, tmp_path, monkeypatch):
    # HalfCheetah's model uses an attribute MuJoCo warns about at every compile
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QSEARCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs" / "cheetah"
    code, _, _ = run(capsys, "train", "--env", "HalfCheetah-v5", "--fp32", "--width", "8", "--steps", "20",
                     "--learning-starts", "10", "--eval-every", "20", "--episodes", "1", "--out", str(out))
    assert code == 0
    assert "settotalmass" in (tmp_path / "runs" / "MUJOCO_LOG.TXT").read_text()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
