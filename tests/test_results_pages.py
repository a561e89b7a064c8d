"""docs/results: every page has its data beside it (or says at its top why not), and the tables a
page shows are the ones its committed data draws, with the commands the pages name."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qsearch.cli import main
from qsearch.select import report_data

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
FRAGMENTS = re.compile(r"_table\.md$")  # tables a page includes, drawn by its bench
NOT_RECOVERED = "**Data not recovered yet"


def pages():
    return sorted(p for p in RESULTS.glob("*.md") if not FRAGMENTS.search(p.name))


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_page_links_its_data_or_says_why_not(page):
    text = page.read_text()
    linked = re.findall(r"\]\(([\w./-]+\.(?:json|csv))\)", text)
    assert all((page.parent / f).is_file() for f in linked), [f for f in linked if not (page.parent / f).is_file()]
    missing = [line for line in text.splitlines() if line.startswith(NOT_RECOVERED)]
    assert linked or missing, f"{page.name}: links no data file and does not say why"
    for line in missing:  # says how to recover it: the command follows
        assert "`" in text[text.index(line):text.index(line) + 600], f"{page.name}: no command to recover its data"


def report_data_files():
    def is_report_data(p):
        d = json.loads(p.read_text())
        return isinstance(d, dict) and d.get("format") == report_data.FORMAT

    return sorted(p for p in RESULTS.glob("*.json") if is_report_data(p))


def test_the_study_pages_have_report_data():
    assert {p.name for p in report_data_files()} >= {"reduced_idp.json", "ppo_bitwidth.json"}


@pytest.mark.parametrize("data", report_data_files(), ids=lambda p: p.name)
def test_a_study_report_is_what_its_data_draws(data, tmp_path, capsys):
    """docs/results/<name>/ (the report a page shows) redrawn from <name>.json alone, by the command the
    pages name."""
    copy = tmp_path / data.name
    shutil.copy(data, copy)
    assert main(["report", "--from-data", str(copy)]) == 0
    assert "drawn" in capsys.readouterr().out
    drawn, committed = tmp_path / data.stem, RESULTS / data.stem
    assert (drawn / "report.md").read_text() == (committed / "report.md").read_text()
    assert sorted(p.name for p in drawn.iterdir()) == sorted(p.name for p in committed.iterdir())


def redrawn(tmp_path, bench: str, page: str, flag: str) -> Path:
    """bench/<bench>.py's table and figure drawn from a copy of docs/results/<page>.json alone, by the
    command the page names: the folder they are drawn in."""
    copy = tmp_path / f"{page}.json"
    shutil.copy(RESULTS / copy.name, copy)
    subprocess.run([sys.executable, str(ROOT / "bench" / f"{bench}.py"), flag, str(copy)], check=True, capture_output=True)
    return tmp_path


def test_the_open_synthesis_table_is_what_its_data_draws(tmp_path):
    drawn = redrawn(tmp_path, "open_synthesis", "open_synthesis", "--from-data")
    table = (drawn / "open_synthesis_table.md").read_text()
    assert table == (RESULTS / "open_synthesis_table.md").read_text()
    assert table.count("| open (yosys) |") >= 5 and (drawn / "open_synthesis.png").stat().st_size > 10_000


@pytest.mark.parametrize("bench, page, flag", [("tracking_load", "tracking_load", "--report"),
                                               ("recurrent_evidence", "recurrent", "--from-data")])
def test_a_bench_pages_table_is_what_its_data_draws(tmp_path, bench, page, flag):
    table = (redrawn(tmp_path, bench, page, flag) / f"{page}_table.md").read_text()
    assert table == (RESULTS / f"{page}_table.md").read_text()
    assert table in (RESULTS / f"{page}.md").read_text()  # the page shows the table its data draws
