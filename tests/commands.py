"""The `qsearch` command as tests run it: exit code and output, and one-line refusals."""
from qsearch.cli import main


def run(capsys, *argv):
    """(exit code, stdout, stderr) of `qsearch ARGV`."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, out_dir, *argv) -> str:
    """The one line a refused `qsearch ARGV --out OUT_DIR` prints: exit 2, no traceback, nothing written."""
    code, _, err = run(capsys, *argv, "--out", out_dir)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not out_dir.exists()
    return err
