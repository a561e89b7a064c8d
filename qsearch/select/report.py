"""`qsearch report`: figures and a Markdown summary of a search or a selection, logged to MLflow.

Reads a search's folder (search.json: every finished trial of its experiment) or a selection's
(select.json and selection.json: the trials its stages used, the picks, noise.json), draws the
figures that its data supports (qsearch/select/figures.py), writes <folder>/report/ (report.md and
the PNGs, written to a temporary folder and renamed into place) and logs that folder to the
search's parent run or the selection's run, under `report/`.

`--data FILE` also writes what the report was drawn from as one small JSON file, and
`--from-data FILE` draws the same report from that file alone (qsearch/select/report_data.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from qsearch import run_folder, tracking
from qsearch import trial_record as record
from qsearch.atomic import replaced_folder
from qsearch.errors import QsearchError
from qsearch.select import figures, pareto, report_data, results, tables
from qsearch.select import selection_record as rec
from qsearch.select.results import Stats
from qsearch.trial_record import Trial

FIGURES = (  # file, title, what it needs
    ("fig1_bitwidth.png", "Return vs bit width per scope (paper Figure 1)",
     "two or more bit widths of one scope at the FP32 width"),
    ("fig2_training.png", "Training curves, selected vs FP32 (paper Figure 2)", "a selection (qsearch select)"),
    ("fig3_noise.png", "Return vs observation noise (paper Figure 3)", "a selection's noise robustness results"),
    ("fig4_width.png", "Return vs hidden width (paper Figure 4)", "two or more widths at the same bits"),
    ("fig5_input_bits.png", "Return vs input bits (paper Figure 5)",
     "two or more input bit widths at the same core bits and width"),
    (pareto.FIGURE, "Return vs hardware cost, networks and logic circuits",
     "open-flow designs of the trials (`qsearch hw FOLDER --flow open --all-trials --out FOLDER/hw`)"),
)


@dataclass
class Data:
    name: str
    kind: str  # "search" or "selection"
    uri: str
    run_id: str  # the parent run the report is logged to
    trials: list[Trial]
    fp32: dict[str, Stats] = field(default_factory=dict)
    fp32_width: dict[str, int] = field(default_factory=dict)
    curves: dict[str, dict[int, float]] = field(default_factory=dict)  # run id -> {step: evaluation return}
    selection: rec.SelectionRecord | None = None
    noise: dict | None = None
    hw: dict | None = None  # the folder's hw/hw.json, when `qsearch hw` wrote one there (the demo does)
    source_file: Path | None = None  # the data file it was read from, if not from a tracking store


def workdir_of(space_path: str | Path | None, workdir: str | Path | None) -> Path:
    """The folder of the search or selection named by a space file, or the one given."""
    if workdir is not None:
        folder = Path(workdir)
        if not folder.is_dir():
            raise QsearchError(f"{folder}: no such folder (expected a search's or a selection's folder)")
        return folder
    if space_path is None:
        raise QsearchError("give a space file or --workdir")
    try:
        data = yaml.safe_load(Path(space_path).read_text())
    except OSError as e:
        raise QsearchError(f"{space_path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise QsearchError(f"{space_path}: not valid YAML: {str(e).splitlines()[0]}") from None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str):
        raise QsearchError(f"{space_path}: name: missing (required)")
    folder = run_folder.default(name)
    if not folder.is_dir():
        raise QsearchError(f"no search or selection named {name!r}: {folder} does not exist "
                           "(run `qsearch search` or `qsearch select` first, or pass --workdir)")
    return folder


def folder_trials(folder: Path) -> tuple[list[Trial], str]:
    """The trials a folder's report shows, and its store's URI (`qsearch hw --all-trials` sweeps them)."""
    data = gather(folder, with_curves=False)
    return data.trials, data.uri


def gather(folder: Path, with_curves: bool = True) -> Data:
    kind = run_folder.kind(folder)
    if kind is None:
        raise QsearchError(f"{folder} holds no search or selection (no select.json or search.json)")
    state = run_folder.state(folder, kind)
    if kind == run_folder.SELECTION:
        record_file = folder / run_folder.SELECTION_RECORD
        if not record_file.is_file() or "selection_run_id" not in state:
            raise QsearchError(f"{folder}: the selection has not finished (no {run_folder.SELECTION_RECORD}); "
                               "run `qsearch select` again")
        selection = rec.SelectionRecord.from_json(run_folder.read_json(record_file), str(record_file))
        used = evaluated_run_ids(selection)
        trials = [t for t in record.read_trials(state["tracking_uri"]) if t.run_id in used]
        noise_file = folder / run_folder.NOISE
        noise = run_folder.read_json(noise_file)["envs"] if noise_file.is_file() else None
        data = Data(state["space_name"], "selection", state["tracking_uri"], state["selection_run_id"], trials,
                    selection=selection, noise=noise)
    else:
        trials = record.read_trials(state["tracking_uri"], [state["experiment_id"]])
        data = Data(state["space_name"], "search", state["tracking_uri"], state["parent_run_id"], trials)
    if not data.trials:
        raise QsearchError(f"{data.name}: no finished trials in the tracking store {data.uri}")
    if not with_curves:
        return data
    c = tracking.client(data.uri)
    data.curves = {t.run_id: record.eval_history(c, t.run_id) for t in data.trials}
    if (folder / report_data.HW).is_file():
        data.hw = run_folder.read_json(folder / report_data.HW)
    return _with_baselines(data)


def from_data(path: str | Path) -> Data:
    """A report's Data from its data file (`qsearch report --data`), with no tracking store."""
    data = Data(**report_data.read(path), source_file=Path(path))
    if not data.trials:
        raise QsearchError(f"{path}: no trials")
    return _with_baselines(data)


def _with_baselines(data: Data) -> Data:
    """data with its FP32 reference per environment, derived from its trials."""
    for t, s in _fp32_configurations(data.trials):
        data.fp32.setdefault(t.env_id, s)
        data.fp32_width.setdefault(t.env_id, t.width)
    without = sorted({t.env_id for t in data.trials} - set(data.fp32))
    if without:
        raise QsearchError(f"{data.name}: no FP32 baseline for {', '.join(without)}: "
                           "a report compares with FP32 (add {fp32: true} to the space's sweep)")
    return data


def evaluated_run_ids(selection: rec.SelectionRecord) -> set[str]:
    """The runs of the values a selection evaluated, and FP32's: a value stopped as not needed was
    never evaluated, so its finished seeds (if any) are not a point of any figure or table."""
    ids = {t.run_id for s in selection.stages for e in s.envs for v in e.values if v.state not in rec.UNEVALUATED
           for t in v.trials}
    return (ids | {t.run_id for ts in selection.fp32.values() for t in ts}) - {None}


def _fp32_configurations(trials):
    """FP32 configurations, widest first: the reference when a space trains more than one."""
    groups = [g for g in results.groups(trials) if g[0].fp32]
    return sorted(groups, key=lambda g: (-g[0].width, g[0].configuration))


def histories(data: Data) -> dict:
    """env -> label -> per-run {step: eval_return_mean}, for the selected and FP32 runs."""
    if data.selection is None:
        return {}
    out = {}
    for env, s in data.selection.selected.items():
        label = f"{rec.describe(s.core_bits, s.width, s.input_bits, s.output_bits)} (selected)"
        out[env] = {f"FP32, width {data.fp32_width[env]}": [data.curves[t.run_id] for t in data.selection.fp32[env]],
                    label: [data.curves[t.run_id] for t in s.trials]}
    return out


def noise_curves(data: Data) -> dict[str, dict[str, dict]]:
    """env -> label -> curve of noise.json, each curve named by its configuration (the figure's legend
    and the table's rows use the same names), FP32 first and the selected configuration last. A
    noise.json written before it recorded configurations holds "fp32" and "selected": named from the
    selection record."""
    out = {}
    for env, curves in (data.noise or {}).items():
        sel = data.selection.selected.get(env) if data.selection is not None else None
        named = {}
        for key, c in curves.items():
            if key == "fp32":
                label = f"FP32, width {data.fp32_width[env]}"
            elif key == "selected" and sel is not None:
                label = f"{rec.describe(sel.core_bits, sel.width, sel.input_bits, sel.output_bits)} (selected)"
            elif c.get("configuration") and data.selection is not None:
                stages = c.get("stages") or [key]
                whose = f"{stages[0]} stage's" if len(stages) == 1 else f"{' and '.join(stages)} stages'"
                label = f"{data.selection.describe(c['configuration'])} ({whose} pick)"
            else:
                label = key
            named[label] = c
        # noise.json's own order is this one; an older file's may not be.
        order = sorted(named, key=lambda lab: (not lab.startswith("FP32"), lab.endswith("(selected)")))
        out[env] = {lab: named[lab] for lab in order}
    return out


def not_trained(data: Data, stage: str) -> dict[str, list[int]]:
    """env -> the values of `stage` a lazy selection did not evaluate (not needed, or stopped as not
    needed), because a smaller one matched."""
    st = data.selection.stage(stage) if data.selection is not None else None
    out = {}
    for e in st.envs if st is not None else ():
        skipped = [v.value for v in e.values if v.state in rec.UNEVALUATED]
        if skipped:
            out[e.env_id] = skipped
    return out


def write(data: Data, out: Path) -> dict[str, bool]:
    """Figures and report.md into `out` (replaced whole). Returns which figures were drawn."""
    networks = [t for t in data.trials if t.family == "mlp"]  # figures 1, 4 and 5 vary a network's bits and width
    with replaced_folder(out) as tmp:
        drawn = {
            "fig1_bitwidth.png": figures.bitwidth(networks, data.fp32, data.fp32_width, tmp / "fig1_bitwidth.png",
                                                  not_trained(data, "core")),
            "fig2_training.png": figures.training(histories(data), tmp / "fig2_training.png"),
            "fig3_noise.png": figures.noise(noise_curves(data), tmp / "fig3_noise.png"),
            "fig4_width.png": figures.width(networks, data.fp32, data.fp32_width, tmp / "fig4_width.png",
                                            not_trained(data, "width")),
            "fig5_input_bits.png": figures.input_bits(networks, data.fp32, data.fp32_width,
                                                      tmp / "fig5_input_bits.png", not_trained(data, "input")),
            pareto.FIGURE: pareto.figure(data, tmp / pareto.FIGURE),
        }
        (tmp / "report.md").write_text(markdown(data, drawn))
    return drawn


def markdown(data: Data, drawn: dict[str, bool]) -> str:
    where = f"Tracking store: `{data.uri}`, run `{data.run_id}`."
    if data.source_file is not None:
        where = f"Redrawn from `{data.source_file.name}`; recorded in tracking store `{data.uri}`, run `{data.run_id}`."
    lines = [f"# qsearch report: {data.kind} `{data.name}`", "", where, ""]
    if data.selection is not None:
        sel = data.selection
        lines += ["## Selection (paper Table 1)", "", "```", tables.selection_table(sel), "```", "",
                  "## Stages", "", "```", "\n\n".join(tables.stage_table(s, sel.rule) for s in sel.stages), "```", "",
                  "## Cost", "", tables.cost_line(sel.cost) + ".", ""]
    lines += ["## Configurations", "", "Final return of each seed, and their mean +- population std.", "",
              *configurations_table(data.trials), ""]
    noise = noise_curves(data)
    if noise:
        lines += ["## Noise robustness", "",
                  "Mean +- std over models (one per seed) of each model's mean return, at each noise sigma.", ""]
        for env, by_label in sorted(noise.items()):
            sigmas = next(iter(by_label.values()))["sigma"]
            lines += [f"### {env}", "", "| configuration | " + " | ".join(f"sigma {s:g}" for s in sigmas) + " |",
                      "|---" + "|---:" * len(sigmas) + "|"]
            for label, c in by_label.items():
                cells = [f"{m:.1f} +- {sd:.1f}" for m, sd in zip(c["mean"], c["std"])]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
    costs = pareto.table(data)
    if costs:
        lines += ["## Return vs hardware cost", "",
                  "Each quantized configuration's open-flow design per throughput target: LUTs and FFs (mean over "
                  "seeds, yosys before place-and-route), LUT levels and latency in cycles (largest over seeds); "
                  "`*` marks the Pareto front of return against LUTs among the designs that fit "
                  "(qsearch/select/pareto.py). Matches FP32: "
                  + ("the selection's own verdict under its rule." if data.selection is not None else
                     "the paper's rule, a mean within one FP32 standard deviation over seeds."), "", *costs]
    lines += ["## Figures", ""]
    for name, title, needs in FIGURES:
        lines += [f"### {title}", "", f"![{title}]({name})" if drawn[name] else f"Not drawn: needs {needs}.", ""]
    return "\n".join(lines)


def configurations_table(trials: list[Trial]) -> list[str]:
    """Markdown rows: per configuration, each seed's final return and the mean +- std over them."""
    seeds = sorted({t.seed for t in trials})
    lines = ["| configuration | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std |",
             "|---" + "|---:" * (len(seeds) + 1) + "|"]
    for t, st in sorted(results.groups(trials), key=lambda g: g[0].configuration):
        by_seed = dict(zip(st.seeds, st.returns))
        cells = [f"{by_seed[s]:,.1f}" if s in by_seed else "-" for s in seeds]
        lines.append(f"| {t.configuration} | " + " | ".join(cells) + f" | {st.mean:,.1f} +- {st.std:,.1f} |")
    return lines


def report(space_path: str | Path | None = None, workdir: str | Path | None = None,
           data_file: str | Path | None = None) -> tuple[Path, dict]:
    """The report of a search's or selection's folder, logged to its run; its data file too if asked."""
    folder = workdir_of(space_path, workdir)
    data = gather(folder)
    out = folder / run_folder.REPORT
    drawn = write(data, out)
    if data_file is not None:
        report_data.write(data, data_file)
    record.log_report(data.uri, data.run_id, str(out))
    return out, drawn


REPORT_FILES = ("report.md", *(name for name, _, _ in FIGURES))


def redraw(data_file: str | Path, out: str | Path | None = None) -> tuple[Path, dict]:
    """The report drawn from a data file alone, into `out` (default: the file's path without its
    suffix, e.g. results.json -> results/). `out` is replaced whole, so it must be absent or hold
    only a report's files: nothing else is lost."""
    data_file = Path(data_file)
    out = Path(out) if out is not None else data_file.with_suffix("")
    if out.exists():
        others = [p.name for p in out.iterdir()] if out.is_dir() else [out.name]
        others = [n for n in others if n not in REPORT_FILES]
        if others:
            raise QsearchError(f"--out {out}: holds files that are not a report's ({', '.join(sorted(others)[:3])}); "
                               "give a new folder or a previous report's")
    data = from_data(data_file)
    return out, write(data, out)
