"""A report's data as one small JSON file: what `qsearch report --data FILE` writes from a search's or
a selection's folder, and what `qsearch report --from-data FILE` redraws the report from, with no
tracking store. A results page publishes its file beside it, so every number on it can be checked,
re-plotted and compared with a later run.

The file (FORMAT, VERSION):

    name, kind     the search's or selection's name; "search" or "selection"
    source         where it was recorded: tracking_uri, run_id (of the search or the selection)
    trials         per trial (one configuration x one seed): run_id; params, the trial's whole
                   configuration as MLflow stores it (strings); summary, its final metrics
                   (final_return, final_return_std, ..., hw_* after `qsearch hw`); curve, the
                   evaluation return over environment steps as [step, return] pairs
    selection      selection.json as written (qsearch/select/selection_record.py), or null
    noise          noise.json's "envs" (per environment and configuration: sigma, per_model, mean,
                   std), or null
    hw             the folder's hw/hw.json (`qsearch hw --out DIR/hw`, as the demo runs it: every
                   design's row), or null

A selection's file holds the trials its stages evaluated and FP32's, as its report does. A file of a
newer VERSION is refused in one line rather than misread.
"""
from __future__ import annotations

import json
from pathlib import Path

from qsearch import run_folder
from qsearch.errors import QsearchError
from qsearch.select import selection_record as rec
from qsearch.trial_record import Trial

FORMAT = "qsearch-report-data"
VERSION = 1
HW = Path("hw") / "hw.json"


def to_json(data) -> dict:
    """The file's content for a report's Data (qsearch/select/report.py)."""
    return {"format": FORMAT, "version": VERSION, "name": data.name, "kind": data.kind,
            "source": {"tracking_uri": data.uri, "run_id": data.run_id},
            "trials": [{"run_id": t.run_id, "params": t.params, "summary": t.summary or {"final_return": t.final_return},
                        "curve": [[step, value] for step, value in sorted(data.curves.get(t.run_id, {}).items())]}
                       for t in sorted(data.trials, key=lambda t: (t.configuration, t.seed, t.run_id))],
            "selection": data.selection.to_json() if data.selection is not None else None,
            "noise": data.noise, "hw": data.hw}


def write(data, path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise QsearchError(f"--data {path}: is a folder (give a file name, e.g. {path / 'results.json'})")
    path.parent.mkdir(parents=True, exist_ok=True)
    run_folder.write_json(path, to_json(data))
    return path


def read(path: str | Path) -> dict:
    """The file's fields, checked: trials as Trial, curves by run id, the selection as its record."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except OSError as e:
        raise QsearchError(f"{path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise QsearchError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise QsearchError(f"{path}: not a report data file (written by `qsearch report --data`)")
    if not isinstance(d.get("version"), int) or d["version"] > VERSION:
        raise QsearchError(f"{path}: written by a newer qsearch (data version {d.get('version')}, this one reads "
                           f"up to {VERSION}): upgrade qsearch to read it")
    try:
        trials = [Trial(t["run_id"], {k: str(v) for k, v in t["params"].items()}, float(t["summary"]["final_return"]),
                        dict(t["summary"])) for t in d["trials"]]
        curves = {t["run_id"]: {int(step): float(value) for step, value in t["curve"]} for t in d["trials"]}
        selection = rec.SelectionRecord.from_json(d["selection"], str(path)) if d["selection"] is not None else None
        return {"name": d["name"], "kind": d["kind"], "uri": d["source"]["tracking_uri"],
                "run_id": d["source"]["run_id"], "trials": trials, "curves": curves, "selection": selection,
                "noise": d["noise"], "hw": d.get("hw")}
    except (KeyError, TypeError, ValueError) as e:
        raise QsearchError(f"{path}: malformed report data ({type(e).__name__}: {e})") from None
