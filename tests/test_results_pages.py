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


def test_the_open_synthesis_table_is_what_its_data_draws(tmp_path):
    copy = tmp_path / "open_synthesis.json"
    shutil.copy(RESULTS / "open_synthesis.json", copy)
    subprocess.run([sys.executable, str(ROOT / "bench" / "open_synthesis.py"), "--from-data", str(copy)],
                   check=True, capture_output=True)
    table = (tmp_path / "open_synthesis_table.md").read_text()
    assert table == (RESULTS / "open_synthesis_table.md").read_text()
    assert table.count("| open (yosys) |") >= 5 and (tmp_path / "open_synthesis.png").stat().st_size > 10_000


def test_the_tracking_load_table_is_what_its_data_draws(tmp_path):
    copy = tmp_path / "tracking_load.json"
    shutil.copy(RESULTS / "tracking_load.json", copy)
    subprocess.run([sys.executable, str(ROOT / "bench" / "tracking_load.py"), "--report", str(copy)],
                   check=True, capture_output=True)
    table = (tmp_path / "tracking_load_table.md").read_text()
    assert table == (RESULTS / "tracking_load_table.md").read_text()
    assert table in (RESULTS / "tracking_load.md").read_text()  # the page shows the table its data draws
