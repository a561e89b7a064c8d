"""The whole pipeline on one space, as the commands a user would type one after another:

    qsearch select SPACE --workdir DIR             searches (stages 1-3), selection, noise robustness
    qsearch hw RUN --reference --out DIR/hw        FINN folding sweep of the selected policy and the paper's reference
    qsearch export RUN --format qonnx|c --out ...  (RUN: the best seed of the selected configuration)
    qsearch export RUN --format mlflow             the same policy as a registered MLflow model
    qsearch report --workdir DIR                   figures and a Markdown summary

`qsearch demo` (and `make demo`) runs them through the CLI itself, so each step prints what it prints
when typed by hand, then ends with where everything is.
"""
from __future__ import annotations

from pathlib import Path

from qsearch import locate, run_folder, trial_record
from qsearch.errors import QsearchError

# Found from the project folder (the package is installed editable), so the demo runs from anywhere.
DEFAULT_SPACE = str(Path(__file__).resolve().parent.parent / "search_spaces" / "selection_pendulum.yaml")
DEFAULT_WORKDIR = str(run_folder.default("demo"))
EXPORT_FORMATS = ("qonnx", "c")


def select_step(space: str, workdir: Path) -> list[str]:
    return ["select", space, "--workdir", str(workdir)]


def deploy_steps(workdir: Path, hw_targets: list[float] | None) -> list[list[str]]:
    """FINN sweep and exports of one policy: the seeds of a configuration share its hardware cost."""
    run_id, uri = best_selected(workdir)
    targets = ["--targets", *(f"{t:g}" for t in hw_targets)] if hw_targets else []
    hw = ["hw", run_id, "--tracking-uri", uri, "--reference", "--out", str(workdir / "hw"), *targets]
    exports = [["export", run_id, "--tracking-uri", uri, "--format", f, "--out", str(workdir / "export" / f),
                "--force"] for f in EXPORT_FORMATS]
    register = ["export", run_id, "--tracking-uri", uri, "--format", "mlflow"]  # a model in MLflow's registry
    return [hw, *exports, register]


DATA = "report_data.json"  # what the report is drawn from, hardware rows included: to publish and redraw


def report_step(workdir: Path) -> list[str]:
    return ["report", "--workdir", str(workdir), "--data", str(workdir / DATA)]


def best_selected(workdir: Path) -> tuple[str, str]:
    """(run id, tracking URI) of the selected run with the highest final return: the seed to deploy."""
    uri = locate.tracking_uri_of(workdir)
    trials = trial_record.selected_trials(uri)
    if not trials:
        raise QsearchError(f"{workdir}: the selection picked no configuration, so there is nothing to export")
    return max(trials, key=lambda t: t.final_return).run_id, uri


def closing(workdir: Path) -> str:
    """What the demo produced and where, ending with the command that opens the MLflow UI on it."""
    sections = []
    for title, path in (("Selection", workdir / run_folder.SELECTION_TABLES),
                        ("Hardware (FINN estimates)", workdir / "hw" / "hw.md")):
        if path.is_file():
            sections.append(f"== {title} ({path}) ==\n{path.read_text().strip()}")
    report = workdir / run_folder.REPORT
    figures = sorted(report.glob("*.png")) if report.is_dir() else []
    lines = [f"report:   {report / 'report.md'}",
             f"figures:  {', '.join(str(f) for f in figures) or '(none)'}",
             f"data:     {workdir / DATA} (qsearch report --from-data {workdir / DATA} redraws the report)",
             f"hardware: {workdir / 'hw'} (hw.md, hw.csv, hw.json, hw.png)",
             *[f"export:   {workdir / 'export' / f}" for f in EXPORT_FORMATS],
             f"MLflow UI: qsearch ui --workdir {workdir}"]
    return "\n\n".join(sections + ["\n".join(lines)])
