"""The `qsearch` command: parsing and messages only; the work is in the library."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path

from qsearch import ray_session, tracking
from qsearch.config import (ALGO_CONFIGS, ALGOS, CALIB_STATISTICS, CHECKPOINT_EVERY, ENCODERS, FIXED_BITS, KINDS,
                            MAPPINGS, OBSERVE, SCOPES, CalibrationConfig, FieldError, PolicyConfig, QuantBits,
                            TrainConfig, check_value, default, field_doc, scalar_kind)
from qsearch.errors import QsearchError
from qsearch.hw.config import HwConfig


SIMULATES = ("train", "eval", "search", "select", "ptq", "demo", "import")  # the commands that run MuJoCo


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line and exit code 2, as for every other bad input
        raise QsearchError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qsearch", description="Quantized continuous controllers for integer hardware.")
    # Every command takes --verbose: MLflow's INFO lines (store creation, migrations) are hidden otherwise.
    common = _Parser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show MLflow's informational log lines")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])

    t = sub.add_parser("train", help="train, evaluate and write a policy bundle",
                       description="Train, evaluate and write a policy bundle. The flags are the fields of "
                                   "qsearch/config.py's configs, their help the fields' docstrings.")
    t.add_argument("--out", required=True, help="bundle folder to write")
    t.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    t.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY, metavar="STEPS",
                   help="save the whole learner state every STEPS environment steps in OUT.checkpoints "
                        f"(0: never; default {CHECKPOINT_EVERY:,}); removed once the bundle is written")
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its latest checkpoint in OUT.checkpoints (the same "
                        "flags): the result is the one an uninterrupted run gives")
    t.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N",
                   help="where the learner's networks, replay batches and updates run (default cpu); the "
                        "environment stays on the CPU and the bundle is device-free")
    _config_flags(t.add_argument_group("run (TrainConfig)"), TrainConfig)
    pol = t.add_argument_group("policy (PolicyConfig, QuantBits)")
    _config_flags(pol, PolicyConfig)
    pol.add_argument("--luts", type=int, nargs="+", metavar="N", help=_field_help("luts", {"": PolicyConfig}))
    pol.add_argument("--fp32", action="store_true", help="the full-precision baseline (no quantization)")
    _config_flags(pol, QuantBits, given_only=True)
    pol.add_argument("--scope", choices=SCOPES, help=f"quantize one scope to --bits, the rest at {FIXED_BITS} bits")
    pol.add_argument("--bits", type=int, metavar="N", help="bit width for --scope")
    algo = t.add_argument_group("algorithm (SACConfig, DDPGConfig, TD3Config, PPOConfig)",
                                "each for the algorithms it names; unset: --algo's default")
    _config_flags(algo, ALGO_CONFIGS, given_only=True)

    e = sub.add_parser("eval", help="evaluate a bundle")
    e.add_argument("bundle", help="bundle folder or MLflow run id")
    e.add_argument("--tracking-uri", help="MLflow tracking URI for a run id (default $MLFLOW_TRACKING_URI)")
    e.add_argument("--episodes", type=int, default=default(TrainConfig, "eval_episodes"))
    e.add_argument("--noise", type=float, default=0.0, metavar="SIGMA", help="Gaussian noise on the normalized observation")
    e.add_argument("--engine", choices=("torch", "int"), default="torch")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print the result as JSON")

    s = sub.add_parser("search", help="run a search space (YAML) on Ray Tune, tracked in MLflow")
    s.add_argument("space", help="search space file, e.g. search_spaces/quickstart.yaml")
    _run_options(s, "search")
    s.add_argument("--resume", action="store_true", help="continue the interrupted search in --workdir")

    u = sub.add_parser("ui", help="start the MLflow UI on a search's tracking store (127.0.0.1)")
    u.add_argument("--workdir", metavar="DIR", help="the search's folder (its mlflow.db)")
    u.add_argument("--tracking-uri", help="MLflow tracking URI instead of --workdir")
    u.add_argument("--port", type=int, default=5000)

    sel = sub.add_parser("select", help="the paper's three-stage selection of the smallest FP32-matching configuration")
    sel.add_argument("space", help="selection space file, e.g. search_spaces/selection_pendulum.yaml")
    _run_options(sel, "selection")
    sel.add_argument("--rule", choices=("sigma", "welch", "bootstrap"), help="FP32-parity rule (default: the space's)")
    sel.add_argument("--alpha", type=float, help="significance level of the welch and bootstrap rules")
    sel.add_argument("--min-band", type=float, metavar="F",
                     help="sigma rule: floor the band's half-width at F x |FP32 mean| (default: the space's)")
    sel.add_argument("--no-noise", action="store_true", help="skip the noise robustness evaluation")
    sel.add_argument("--plan", action="store_true",
                     help="print the trials and environment steps per strategy (worst and best case, and what "
                          "remains given the tracking store) without training anything")

    r = sub.add_parser("report", help="figures and a Markdown summary of a search or selection")
    r.add_argument("space", nargs="?", help="the search or selection space file (its folder is runs/<name>)")
    r.add_argument("--workdir", metavar="DIR", help="the search's or selection's folder instead")
    r.add_argument("--data", metavar="FILE", help="also write what the report is drawn from (trials, curves, the "
                   "selection, noise results) as one JSON file, to publish beside a results page")
    r.add_argument("--from-data", metavar="FILE", help="draw the report from such a file alone (no tracking store)")
    r.add_argument("--out", metavar="DIR", help="with --from-data: the report's folder (default: FILE without its "
                   "suffix; replaced whole, so absent or a previous report's)")

    x = sub.add_parser("export", help="export a quantized bundle to QONNX, integer JSON, portable C, a FINN build folder or an MLflow model")
    x.add_argument("bundle", help="bundle folder or MLflow run id")
    x.add_argument("--format", required=True, help="qonnx, json, c, finn, verilog or mlflow (a run's policy as a registered model)")
    x.add_argument("--out", metavar="DIR", help="folder to write (every format but mlflow)")
    x.add_argument("--tracking-uri", help="MLflow tracking URI for a run id (default $MLFLOW_TRACKING_URI)")
    x.add_argument("--force", action="store_true", help="replace a non-empty --out")
    x.add_argument("--target", default="host", help="c: also build for host, cortex-m0, cortex-m4, cortex-m7 or "
                   "rv32imc and report flash, RAM and instructions per action, from float and from integer observations "
                   "(default host)")
    x.add_argument("--layout", default="auto", help="c: weights packed (smallest), int8 (fast) or auto (int8 "
                   "unless only packed fits --flash-budget; default)")
    x.add_argument("--flash-budget", type=int, metavar="BYTES", help="c: flash the policy may take")
    x.add_argument("--verify", type=int, nargs="?", const=10_000, metavar="N",
                   help="c: run N random observations (default 10,000) and the special ones (rounding ties, "
                   "+-inf, NaN, far out of range) on the target and compare with the Python engine")
    x.add_argument("--clock-mhz", type=float, metavar="MHZ", help="c: clock for the latency estimate")

    q = sub.add_parser("ptq", help="post-training quantization of an FP32 bundle (the PTQ baseline)")
    q.add_argument("bundle", help="FP32 bundle folder or MLflow run id")
    q.add_argument("--bits-core", type=int, required=True, metavar="B", help="bits of the weights and hidden activations")
    q.add_argument("--bits-in", type=int, required=True, metavar="B", help="bits of the input (output stays at 8)")
    q.add_argument("--calib-episodes", type=int, default=default(CalibrationConfig, "episodes"), metavar="N",
                   help=_field_help("episodes", {"": CalibrationConfig}))
    q.add_argument("--calib-noise", type=float, default=default(CalibrationConfig, "action_noise"), metavar="STD",
                   help=_field_help("action_noise", {"": CalibrationConfig}))
    q.add_argument("--calib-stat", default=default(CalibrationConfig, "statistic"), choices=CALIB_STATISTICS,
                   help=_field_help("statistic", {"": CalibrationConfig}))
    q.add_argument("--episodes", type=int, default=default(TrainConfig, "eval_episodes"), help="evaluation episodes")
    q.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write")
    q.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    q.add_argument("--tracking-uri", help="MLflow tracking URI for a run id (default $MLFLOW_TRACKING_URI)")

    h = sub.add_parser("hw", help="FINN's estimates and/or open synthesis (yosys) over throughput targets (Table 3)")
    h.add_argument("ref", nargs="?", metavar="BUNDLE_OR_SEARCH",
                   help="bundle folder, search/selection folder (its selected bundles) or MLflow run id")
    _hw_options(h)
    h.add_argument("--flow", default="finn", metavar="finn|open|both",  # checked by flows.resolve (not imported here: torch)
                   help="finn: FINN's estimates; open: qsearch's RTL, checked in verilator against the integer engine "
                        "and synthesized with yosys for the 7-series (cell counts before place-and-route, timing not "
                        "closed); both: side by side (default finn)")
    h.add_argument("--all-trials", action="store_true",
                   help="with a search or selection folder: every quantized trial its report shows, not only the "
                        "selected ones (for the report's return against hardware cost; write with --out FOLDER/hw)")
    h.add_argument("--reference", action="store_true", help="also sweep the paper's reference design (256 wide, 8/4/8 bits)")
    h.add_argument("--paper", action="store_true", help="also sweep the paper's five Table-1 configurations (random weights)")
    h.add_argument("--address", help="join a Ray cluster: auto or ray://host:port (default: a local Ray)")
    h.add_argument("--resource", metavar="NAME", help="custom Ray resource each task requires, e.g. finn")
    h.add_argument("--check-netlist", action="store_true", help=_hw_help("check_netlist"))
    h.add_argument("--synth", action="store_true", help="Vivado out-of-context synthesis of the chosen designs (needs XILINX_VIVADO)")
    h.add_argument("--tracking-uri", help="MLflow tracking URI for a run id (default $MLFLOW_TRACKING_URI)")
    h.add_argument("--out", metavar="DIR", help="report folder (default hw_builds/<name>)")

    i = sub.add_parser("import", help="an RLlib checkpoint of qsearch's PPO module -> a policy bundle")
    i.add_argument("checkpoint", help="RLlib algorithm checkpoint folder")
    i.add_argument("--out", required=True, help="bundle folder to write")
    i.add_argument("--episodes", type=int, default=default(TrainConfig, "eval_episodes"), help="evaluation episodes")
    i.add_argument("--force", action="store_true", help="replace an existing bundle at --out")

    d = sub.add_parser("demo", help="the whole pipeline: select -> hw -> export -> report (what `make demo` runs)")
    d.add_argument("space", nargs="?", default=None, help="selection space (default search_spaces/selection_pendulum.yaml)")
    d.add_argument("--workdir", metavar="DIR", default=None, help="the demo's folder (default runs/demo)")
    d.add_argument("--targets", type=float, nargs="+", metavar="FPS", help=_hw_help("targets"))
    return p


def _hw_options(p: argparse.ArgumentParser) -> None:
    """`qsearch hw`'s hardware options: defaults and help are HwConfig's fields and their docstrings."""
    p.add_argument("--targets", type=float, nargs="+", default=default(HwConfig, "targets"), metavar="FPS",
                   help=_hw_help("targets"))
    p.add_argument("--part", default=default(HwConfig, "part"), help=_hw_help("part"))
    p.add_argument("--clock-ns", type=float, default=default(HwConfig, "clock_ns"), metavar="NS", help=_hw_help("clock_ns"))
    p.add_argument("--pad", type=int, default=default(HwConfig, "pad"), metavar="N", help=_hw_help("pad"))
    p.add_argument("--mvau-wwidth-max", type=int, default=default(HwConfig, "mvau_wwidth_max"), metavar="BITS",
                   help=_hw_help("mvau_wwidth_max"))


def _hw_help(name: str) -> str:
    value = default(HwConfig, name)
    if value is None:  # the docstring says what unset means
        return field_doc(HwConfig, name)
    return f"{field_doc(HwConfig, name)} (default {_shown(value)})"


def _shown(value) -> str:
    """A default as the help shows it: 10,000, 0.0003, on, xc7a15tfgg484-1, 300 300, 1e2 1e3."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and all(isinstance(t, int) for t in value):
        return " ".join(f"{t:,}" for t in value)
    if isinstance(value, tuple):
        return " ".join(f"{t:.0e}".replace("e+0", "e") for t in value)
    return str(value)


# `qsearch train`'s flags are generated from the configs' fields (_config_flags): a new field is a new flag,
# with its docstring as help. This table keeps today's names where they differ from the field's, and
# says what a field's type cannot.
TRAIN_FLAGS = {
    "env_id": {"flag": "--env", "required": True},
    "total_steps": {"flag": "--steps", "required": True},  # TrainConfig's default is the paper's 1e6 steps
    "eval_episodes": {"flag": "--episodes"},
    "algo": {"choices": ALGOS},
    "observe": {"choices": OBSERVE},
    "encoder": {"choices": ENCODERS},
    "kind": {"flag": "--policy", "choices": KINDS},
    "mapping": {"choices": MAPPINGS},
}


def _flag(field: str) -> str:
    return TRAIN_FLAGS.get(field, {}).get("flag", "--" + field.replace("_", "-"))


def _dest(field: str) -> str:
    return _flag(field)[2:].replace("-", "_")


def _config_flags(group, classes, given_only: bool = False) -> None:
    """A flag for each int, float, bool and str field of a dataclass, or of several ({label: class}: a
    field several have, such as the algorithms' gamma, is one flag), its help the field's docstring
    and default. given_only: the flag is None unless given, so that the config's own default applies
    (an algorithm's, which differ; 8 bits); else the flag's default is the field's."""
    if not isinstance(classes, dict):
        classes = {"": classes}  # one class: no label
    fields = {}  # name -> Field, in the classes' order
    for cls in classes.values():
        fields.update({f.name: f for f in dataclasses.fields(cls) if scalar_kind(f) and f.name not in fields})
    for name, f in fields.items():
        kw = {k: v for k, v in TRAIN_FLAGS.get(name, {}).items() if k != "flag"}
        kind = scalar_kind(f)
        if kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction  # --autotune / --no-autotune
        else:
            kw["type"] = {"int": int, "float": float, "str": str}[kind]
            if kind != "str":
                kw["metavar"] = "N" if kind == "int" else "X"
        if not given_only and not kw.get("required"):
            kw["default"] = default(next(iter(classes.values())), name)
        group.add_argument(_flag(name), help=_field_help(name, classes, shown=not kw.get("required")), **kw)


def _field_help(name: str, classes: dict, shown: bool = True) -> str:
    """The field's docstring and default (shown). Where classes (the algorithms) differ in either, each
    one's, labelled: `sac: ... (default 5,000); ddpg, td3: ... (default 25,000)`."""
    helps = {}  # help -> labels
    for label, cls in classes.items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            value = default(cls, name)
            text = field_doc(cls, name)
            if shown and value is not dataclasses.MISSING:
                text += f" (default {_shown(value)})"
            helps.setdefault(text.replace("%", "%%"), []).append(label)  # argparse formats help with %
    if len(helps) == 1 and len(next(iter(helps.values()))) == len(classes):
        return next(iter(helps))  # every class alike
    return "; ".join(f"{', '.join(labels)}: {text}" for text, labels in helps.items())


def _run_options(p: argparse.ArgumentParser, what: str) -> None:
    """Where a search or a selection runs and what it keeps: the same options for both."""
    p.add_argument("--workdir", metavar="DIR", help=f"the {what}'s folder (default runs/<space name>)")
    p.add_argument("--address", help="join a Ray cluster: auto or ray://host:port (default: a local Ray)")
    p.add_argument("--storage", help="where Tune keeps results, e.g. a shared folder or s3:// (default DIR)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///DIR/mlflow.db)")


def _quant_bits(a) -> QuantBits | None:
    given = _given(a, QuantBits)
    if a.fp32:
        if given or a.scope or a.bits is not None:
            raise QsearchError("--fp32 cannot be combined with bit widths")
        return None
    if a.scope or a.bits is not None:
        if given:
            raise QsearchError("use either --scope/--bits or the --bits-* options, not both")
        if not (a.scope and a.bits is not None):
            raise QsearchError("--scope and --bits go together")
        return QuantBits.from_scope(a.scope, a.bits)
    return QuantBits(**given)


def _given(a, cls) -> dict:
    """The values of `cls`'s flags that are set (a None leaves the config's default)."""
    values = {f.name: getattr(a, _dest(f.name)) for f in dataclasses.fields(cls) if scalar_kind(f)}
    return {k: v for k, v in values.items() if v is not None}


def _train_config(a) -> TrainConfig:
    """The run `qsearch train`'s flags describe. The configs check every value; a refused one is named by
    its flag (`--learning-starts must be >= 0, got -1`)."""
    for name, algos in _algo_fields().items():
        if a.algo not in algos and getattr(a, _dest(name)) is not None:
            raise QsearchError(f"{_flag(name)} applies to --algo {', '.join(algos)} only, not {a.algo}")
    algo_cls = ALGO_CONFIGS[a.algo]
    try:
        luts = {} if a.luts is None else {"luts": tuple(a.luts)}
        policy = PolicyConfig(**_given(a, PolicyConfig), **luts, quant=_quant_bits(a))
        return TrainConfig(**_given(a, TrainConfig), policy=policy, algo_config=algo_cls(**_given(a, algo_cls)))
    except FieldError as e:
        raise QsearchError(f"{_flag(e.field)} {e.reason}") from None


def _algo_fields() -> dict[str, list[str]]:
    """Each algorithm field's name -> the algorithms that have it."""
    owners = {}
    for algo, cls in ALGO_CONFIGS.items():
        for f in dataclasses.fields(cls):
            owners.setdefault(f.name, []).append(algo)
    return owners


def _train(a) -> int:
    from qsearch import pipeline
    from qsearch.progress import TrainProgress
    from qsearch.rl.checkpoint import FolderCheckpoints
    from qsearch.rl.envs import log_mujoco_to

    cfg = _train_config(a)
    try:
        pipeline.check(cfg, a.out, a.force, a.device)
    except FieldError as e:
        raise QsearchError(f"{_flag(e.field)} {e.reason}") from None
    checkpoints = FolderCheckpoints(pipeline.checkpoint_folder(a.out), a.checkpoint_every, a.resume)
    if checkpoints.resume_from is not None:
        print(f"continuing from {checkpoints.resume_from}")
    log_mujoco_to(Path(a.out).resolve().parent)
    with TrainProgress(cfg.total_steps) as bar:
        b = pipeline.run(cfg, a.out, episodes=cfg.eval_episodes, progress=bar.update, force=a.force,
                         checkpoints=checkpoints, device=a.device)
    checkpoints.discard()
    print(f"wrote {a.out}")
    _print_evaluation(b.evaluation)
    return 0


def _print_evaluation(ev: dict) -> None:
    n = ev["episodes"]
    print(f"return (torch, {n} episodes): {ev['torch']['mean']:.1f} +- {ev['torch']['std']:.1f}")
    if "int" in ev:
        print(f"return (integer engine, {n} episodes): {ev['int']['mean']:.1f} +- {ev['int']['std']:.1f}")
        ag = ev["agreement"]
        print(f"integer-engine agreement: {100 * ag['equal_outputs']:.2f}% of {ag['observations']} observations "
              "give the same output integers as the QAT model")


def _eval(a) -> int:
    from qsearch import bundle as bundles
    from qsearch.locate import locate_bundle
    from qsearch.rl.envs import log_mujoco_to
    from qsearch.rl.evaluate import evaluate

    if a.episodes < 1:
        raise QsearchError(f"--episodes must be at least 1, got {a.episodes}")
    if a.noise < 0:
        raise QsearchError(f"--noise must be >= 0, got {a.noise}")
    path = locate_bundle(a.bundle, a.tracking_uri)
    b = bundles.read(path)
    log_mujoco_to(path.resolve().parent)
    res = evaluate(b.policy(a.engine), b.config.env_id, b.obs_norm, a.episodes, a.seed, a.noise, b.config.observe)
    out = {"bundle": str(a.bundle), "env": b.config.env_id, "engine": a.engine, "episodes": a.episodes,
           "noise": a.noise, "seed": a.seed, "mean": res.mean, "std": res.std, "returns": res.returns.tolist()}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{b.config.env_id} {a.engine} engine, {a.episodes} episodes, noise {a.noise}: "
              f"return {res.mean:.1f} +- {res.std:.1f}")
    return 0


def _search(a) -> int:
    from qsearch.search.run import search

    ray_session.cluster_address(a.address)  # an unreachable cluster is refused before anything is written
    out = search(a.space, workdir=a.workdir, address=a.address, storage=a.storage,
                 tracking_uri=a.tracking_uri, resume=a.resume)
    print(out.table)
    print(f"MLflow: {out.tracking_uri} (parent run {out.parent_run_id}); Tune: {out.experiment_path}")
    return 0 if all(r["status"] != "failed" for r in out.rows) else 1


def _ui(a) -> int:
    from qsearch.search.ui import serve

    return serve(workdir=a.workdir, tracking_uri=a.tracking_uri, port=a.port)


def _select(a) -> int:
    from qsearch.select import spec
    from qsearch.select.parity import Rule
    from qsearch.select.selection import select

    if a.plan:
        from qsearch.select.plan import plan

        print(plan(a.space, a.workdir, a.tracking_uri))
        return 0
    ray_session.cluster_address(a.address)  # an unreachable cluster is refused before anything is written
    rule = None
    if a.rule or a.alpha is not None or a.min_band is not None:
        base = spec.load(a.space).rule
        rule = Rule(a.rule or base.name, base.alpha if a.alpha is None else a.alpha,
                    base.min_band if a.min_band is None else a.min_band)
    outcome = select(a.space, workdir=a.workdir, tracking_uri=a.tracking_uri, address=a.address, rule=rule,
                     noise=not a.no_noise, storage=a.storage)
    return 1 if outcome.unmatched else 0  # like grep: nothing selected for some environment


def _report(a) -> int:
    from qsearch.select.report import FIGURES, redraw, report

    if a.from_data is not None:
        if a.space is not None or a.workdir is not None or a.data is not None:
            raise QsearchError("report: --from-data draws from the file alone (no space file, --workdir or --data)")
        out, drawn = redraw(a.from_data, a.out)
    elif (a.space is None) == (a.workdir is None):
        raise QsearchError("report: give either a space file or --workdir (or --from-data FILE)")
    elif a.out is not None:
        raise QsearchError("report: --out is for --from-data (a folder's report goes to <folder>/report)")
    else:
        out, drawn = report(a.space, a.workdir, a.data)
        if a.data is not None:
            print(f"wrote {a.data}")
    print(f"wrote {out / 'report.md'}")
    for name, title, needs in FIGURES:
        print(f"  {name}: {'drawn' if drawn[name] else 'not drawn (needs ' + needs + ')'}")
    return 0


def _import(a) -> int:
    from qsearch.rllib_import import import_checkpoint

    if a.episodes < 1:
        raise QsearchError(f"--episodes must be at least 1, got {a.episodes}")
    b = import_checkpoint(a.checkpoint, a.out, a.episodes, a.force)
    print(f"wrote {a.out} (from {a.checkpoint})")
    _print_evaluation(b.evaluation)
    return 0


def _export(a) -> int:
    from qsearch.deploy.export import export

    from qsearch.deploy.export import COptions

    c = COptions(a.target, a.layout, a.flash_budget, a.verify, a.clock_mhz)
    for line in export(a.bundle, a.format, a.out, tracking_uri=a.tracking_uri, force=a.force, c_options=c):
        print(line)
    return 0


def _ptq(a) -> int:
    from qsearch.deploy.ptq import ptq

    for flag, bits in (("--bits-core", a.bits_core), ("--bits-in", a.bits_in)):
        try:
            check_value("bits", bits)
        except FieldError as e:
            raise QsearchError(f"{flag} {e.reason}") from None
    calib = CalibrationConfig(a.calib_episodes, a.calib_noise, a.calib_stat)
    b = ptq(a.bundle, a.out, a.bits_core, a.bits_in, calib, episodes=a.episodes, force=a.force,
            tracking_uri=a.tracking_uri)
    print(f"wrote {a.out} (PTQ of {a.bundle}, calibrated on {b.evaluation['ptq']['calib_observations']} observations: "
          f"{calib.episodes} rollouts, action noise {calib.action_noise:g}, statistic {calib.statistic})")
    _print_evaluation(b.evaluation)
    return 0


def _hw(a) -> int:
    from qsearch.hw.command import run_hw
    from qsearch.hw.sweep import SweepConfig, nowhere_line

    hw = HwConfig(targets=tuple(a.targets), part=a.part, clock_ns=a.clock_ns, pad=a.pad, mvau_wwidth_max=a.mvau_wwidth_max,
                  check_netlist=a.check_netlist)
    cfg = SweepConfig(hw, resource=a.resource, address=a.address)
    ray_session.cluster_address(a.address)  # an unreachable cluster is refused before anything is written

    def progress(done, total, row):
        line = f"[{done}/{total}] {row.policy} ({row.flow}) at {row.target_fps:.0e} actions/s"
        print(f"\r{line:<72}", end="", file=sys.stderr, flush=True)
    res = run_hw(a.ref, cfg, a.out, reference=a.reference, paper=a.paper, tracking_uri=a.tracking_uri,
                 synth=a.synth, progress=progress, flow=a.flow, all_trials=a.all_trials)
    print(file=sys.stderr)
    print(res.table)
    for n in res.notes:
        print(f"- {n}")
    print(f"wrote {res.out}/hw.csv, hw.md, hw.json, hw.png" + (f"; logged to MLflow runs {', '.join(res.logged_runs)}" if res.logged_runs else ""))
    if res.nowhere:  # 1: written, but not every policy has a design; 2 stays "refused, nothing written"
        print(f"qsearch: fits the device at no target: {'; '.join(map(nowhere_line, res.nowhere.values()))}; "
              f"every row is written to {res.out}", file=sys.stderr)
        return 1
    return 0


def _demo(a) -> int:
    import time
    from pathlib import Path

    from qsearch import demo

    space, workdir = a.space or demo.DEFAULT_SPACE, Path(a.workdir or demo.DEFAULT_WORKDIR)
    if a.targets:
        HwConfig(targets=tuple(a.targets))  # refused now, not after the searches
    started = time.perf_counter()
    steps = [lambda: [demo.select_step(space, workdir)], lambda: demo.deploy_steps(workdir, a.targets),
             lambda: [demo.report_step(workdir)]]
    for make in steps:  # each step's arguments may depend on what the previous one wrote
        for argv in make():
            print(f"\n$ qsearch {' '.join(argv)}", flush=True)
            rc = main(argv)
            if rc == 2 or (rc and argv[0] != "select"):  # select says 1 when some environment had no match
                return rc
    print(f"\n{demo.closing(workdir)}\n\ndemo finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        a = _parser().parse_args(argv)
        tracking.setup_environment(verbose=a.verbose)
        if a.command in SIMULATES:
            # MuJoCo warns while validating spaces too (deprecated model attributes), before any run's
            # folder exists: those lines go to qsearch's cache folder, not the current one.
            from qsearch.locate import cache_dir
            from qsearch.rl.envs import log_mujoco_to

            log_mujoco_to(cache_dir())
        return {"train": _train, "eval": _eval, "search": _search, "ui": _ui, "select": _select, "report": _report,
                "export": _export, "import": _import, "ptq": _ptq, "hw": _hw, "demo": _demo}[a.command](a)
    except QsearchError as e:
        print(f"qsearch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qsearch: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
