"""Open synthesis (yosys, no Vivado) of the paper's Table 1 configurations and reference design.

  .venv/bin/python bench/open_synthesis.py [--out hw_builds/bench_open] [--finn DIR]

For each policy (random weights of the paper's shapes, padded to 32 as the paper did, as
`qsearch hw --paper --reference --pad 32` builds them), targets from 1e3 actions/s up by powers of
10: the chooser's architecture for the target (fully parallel at one action per clock, else the
cheapest folding), generated, simulated in verilator against the integer engine, synthesized with
yosys for the XC7A15T at 100 MHz (as many vectors as the open flow uses: qsearch/hw/open_steps.py), and
(for the fully parallel Hopper designs) the netlist simulated too. The sweep
stops at the first target that does not fit (or whose yosys run exceeds TIMEOUT_S): the one before
is the policy's highest fitting target. A fully parallel
design is not synthesized when its non-zero weights times LUT_PER_WEIGHT exceed twice the device's
LUTs (measured: 4.9 LUT per non-zero weight on the padded paper Hopper; yosys needs tens of minutes for
such designs, e.g. Humanoid's 400,000-gate adder network, that cannot fit); the next target is tried.

Also a trained Hopper-shaped policy (tests/policies.py's warmed_actor, 11-16-16-3, the paper's bits).
--finn DIR reads FINN's chosen rows from a `qsearch hw --paper --reference --pad 32 --out DIR` run.
Writes results.json into --out; one yosys start-up first (timed). `--report` gathers the runs under
--out and FINN's hw.json into one data file (open_synthesis.json: every design's row) with a Markdown
table and a figure beside it; `--from-data docs/results/open_synthesis.json` redraws the table and the
figure from the committed file alone.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from qsearch.config import QuantBits  # noqa: E402
from qsearch.errors import QsearchError  # noqa: E402
from qsearch.hw.open_steps import LUT_PER_WEIGHT, vectors  # noqa: E402
from qsearch.hw.policies import paper_policies, padded  # noqa: E402
from qsearch.hw.rtl import tools  # noqa: E402
from qsearch.hw.rtl.arch import PARALLEL, choose  # noqa: E402
from qsearch.hw.rtl.yosys import synthesize  # noqa: E402
from qsearch.quant import integer  # noqa: E402
from qsearch.obs_norm import ObsNorm  # noqa: E402

TARGETS = [1e3, 1e4, 1e5, 1e6, 1e7, 1e8]
TIMEOUT_S = 600  # per tool run; a design that takes longer counts as not fitting
CLOCK_NS = 10.0
PART = "xc7a15tfgg484-1"
DEVICE_LUT = 10_400
# The paper's Table 3 (XC7A15T-1, 100 MHz, Vivado) as printed: LUT, FF, BRAM36, DSP, latency us, actions/s.
# Its BRAM figures are 36 Kb blocks (its Table 2 gives the part 25 BRAM36); the table below shows them
# as BRAM18 (x 2), the unit of every other row.
PAPER = {
    "Humanoid": (2300, 3100, 1.5, 45, 15.4, 6.5e4), "Walker2d": (1900, 1600, 2, 4, 162.2, 6.2e3),
    "Ant": (2700, 4500, 3, 45, 2.3, 4.4e5), "HalfCheetah": (4300, 4600, 15, 11, 243.2, 4.1e3),
    "Hopper": (2400, 2000, 0, 45, 0.2, 1.4e8),
    "Humanoid reference": (8400, 9500, 25, 22, 243.3, 4.1e3), "Walker2d reference": (5800, 5700, 25, 11, 243.3, 4.1e3),
    "Ant reference": (4600, 5900, 25, 11, 243.3, 4.1e3), "HalfCheetah reference": (5300, 5700, 25, 11, 243.3, 4.1e3),
    "Hopper reference": (4400, 5400, 25, 11, 243.3, 4.1e3),
}


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (yosys, verilator, the C++ compiler)."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def model_of(actor) -> integer.IntegerModel:
    n = actor.obs_dim
    return integer.extract(actor, ObsNorm(np.zeros(n, np.float32), np.ones(n, np.float32)))


def sweep(name: str, model, out: Path, netlist: bool, targets=TARGETS, timeout: float = TIMEOUT_S) -> list[dict]:
    rows, done = [], {}
    for target in targets:
        arch = choose(model, target, CLOCK_NS)
        row = {"policy": name, "target": target, "arch": arch.describe()}
        if arch in done:  # a lower target already chose this design: same result
            rows.append({**done[arch], **row, "cpu_s": 0.0})
            print(name, target, "same design as before", flush=True)
            continue
        nonzero = sum(int(np.count_nonzero(l.weight)) for l in model.layers)
        if arch == PARALLEL and nonzero * LUT_PER_WEIGHT > 2 * DEVICE_LUT:
            rows.append({**row, "skipped": f"{nonzero} non-zero weights as constants", "fits": False})
            print(name, target, "skipped", flush=True)
            break
        folder = out / "designs" / f"{name.replace(' ', '_')}_{int(target):d}"
        cpu = cpu_s()
        try:
            n = vectors(model, arch)
            r = synthesize(model, arch, PART, CLOCK_NS, folder=folder, check_netlist=netlist and arch == PARALLEL,
                           vectors=n, timeout=timeout)
        except (QsearchError, subprocess.TimeoutExpired) as e:
            rows.append({**row, "error": str(e).splitlines()[0][:200], "fits": False})
            print(name, target, "error", str(e)[:200], flush=True)
            break
        rows.append({**row, **r.as_dict(), "cpu_s": cpu_s() - cpu})
        done[arch] = rows[-1]
        print(name, target, r.arch, f"LUT {r.lut} FF {r.ff} DSP {r.dsp} BRAM18 {r.bram18} fits {r.fits} "
              f"{r.seconds:.1f} s wall, {rows[-1]['cpu_s']:.1f} s CPU (tools: {r.tool_cpu_s})", flush=True)
        if not r.fits:
            break
    return rows


def finn_rows(data: dict | None) -> dict:
    """FINN's chosen row (highest fitting target) per policy from a `qsearch hw` run's hw.json."""
    if not data:
        return {}
    chosen = data["chosen"].get("finn", {})  # hw.json: flow -> policy -> chosen target
    return {r["policy"]: r for r in data["rows"] if r.get("flow", "finn") == "finn"
            and chosen.get(r["policy"]) == r["target_fps"]}


DATA = "open_synthesis.json"


def gather(out: Path, finn: Path | None) -> dict:
    """The data of the page: every open-flow row of the results.json files under `out` (several runs,
    shards) and the hw.json of a `qsearch hw --paper --reference --pad 32` run (every FINN design)."""
    files = [json.loads(f.read_text()) for f in sorted(out.glob("**/results.json"))]
    # a finished run writes {"rows": ...}; an interrupted one its rows so far
    rows = [r for data in files for r in (data["rows"] if isinstance(data, dict) else data)]
    hw = json.loads((finn / "hw.json").read_text()) if finn and (finn / "hw.json").is_file() else None
    return {"open": rows, "finn": hw}


def chosen(rows: list[dict]) -> dict:
    """Per policy: the row of its highest fitting target (rows may come from several runs)."""
    out = {}
    for r in rows:
        if r.get("fits") and r["target"] >= out.get(r["policy"], {}).get("target", 0):
            out[r["policy"]] = r
    return out


def above(policy: str, rows: list[dict], target: float) -> str:
    """What happened at the lowest target tried above `target`: why it is not the chosen one."""
    higher = sorted((r for r in rows if r["policy"] == policy and r["target"] > target), key=lambda r: r["target"])
    if not higher:
        return "- (one action per clock)" if target >= 1e9 / CLOCK_NS else "not tried"
    r = higher[0]
    if "error" in r:
        return f"{r['target']:.0e}: " + ("yosys timed out" + r["error"].split("timed out")[-1].replace(" seconds", " s wall")
                                          if "timed out" in r["error"] else r["error"][:80])
    if "skipped" in r:
        return f"{r['target']:.0e}: parallel, not synthesized ({r['skipped']})"
    return f"{r['target']:.0e}: {r['arch']}, {r['lut']:,} LUT, {r['bram18']:g} BRAM18, {r['dsp']} DSP"


def paper_bram18(policy: str) -> float:
    """The paper's BRAM figure of a policy in BRAM18 (it prints 36 Kb blocks)."""
    return 2 * PAPER[policy][2]


def paper_rate(actions_per_s: float) -> str:
    """The paper's actions/s as printed, flagged when it exceeds one action per clock."""
    return f"{actions_per_s:.2g}" + (" (sic: > 1 per clock)" if actions_per_s > 1e9 / CLOCK_NS else "")


PAPER_NOTES = [
    "Paper rows: the paper's Table 3 (Vivado post-synthesis, XC7A15T-1, 100 MHz; no target column). Its BRAM "
    "figures are 36 Kb blocks, shown here as BRAM18 (x 2): HalfCheetah's 15 is 30, the references' 25 is 50, "
    "the whole XC7A15T.",
    f"(sic: > 1 per clock): the paper's Hopper throughput, {PAPER['Hopper'][5]:.1e} actions/s at "
    f"{1e3 / CLOCK_NS:g} MHz, is more than one action per clock (at most {1e9 / CLOCK_NS:.0e}/s for one "
    "pipeline); copied as printed, and so is its energy per action, which is derived from it.",
]


ORDER = ["Hopper", "Hopper trained", "Humanoid", "Walker2d", "Ant", "HalfCheetah"]


def ordered(rows: list[dict]) -> list[str]:
    """The policies of `rows`: the paper's Table 1 first, then the reference designs, each in ORDER."""
    def key(p):
        task = p.replace(" reference", "")
        return "reference" in p, ORDER.index(task) if task in ORDER else len(ORDER)
    return sorted(dict.fromkeys(r["policy"] for r in rows), key=key)


def finn_key(policy: str, finn: dict) -> dict | None:
    for name, row in finn.items():
        if name == policy or (name.split(" h")[0] == policy and "reference" not in name):
            return row
    return None


def table(rows: list[dict], finn: dict) -> str:
    """Markdown: per policy the open flow's highest fitting design, FINN's estimate, the paper's Table 3."""
    best = chosen(rows)
    out = ["| policy | flow | target/s | architecture | LUT | FF | CARRY4 | DSP | BRAM18 | latency | actions/s | "
           "LUT levels | next target up |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for policy in ordered(rows):
        r = best.get(policy)
        if r:
            out.append(f"| {policy} | open (yosys) | {r['target']:.0e} | {r['arch']} | {r['lut']:,} | {r['ff']:,} | "
                       f"{r['carry4']} | {r['dsp']} | {r['bram18']:g} | {r['latency_us']:.3g} us | "
                       f"{r['actions_per_s']:.2g} | {r['lut_levels']} | {above(policy, rows, r['target'])} |")
        else:
            lowest = min((x["target"] for x in rows if x["policy"] == policy))
            out.append(f"| {policy} | open (yosys) | none | | | | | | | | | | {above(policy, rows, lowest / 10)} |")
        f = finn_key(policy, finn)
        if f:
            out.append(f"| | FINN estimate | {f['target_fps']:.0e} | FINN {f.get('arch', 'folding')} | {f['lut']:,.0f} | - "
                       f"| - | {f['dsp']:g} | {f['bram18']:g} | {f['latency_us']:.3g} us | {f['actions_per_s']:.2g} | - | |")
        pp = PAPER.get(policy)
        if pp:
            out.append(f"| | paper (Vivado) | | FINN | {pp[0]:,} | {pp[1]:,} | - | {pp[3]} | {paper_bram18(policy):g} | "
                       f"{pp[4]:g} us | {paper_rate(pp[5])} | - | |")
    notes = PAPER_NOTES if any(p in PAPER for p in ordered(rows)) else []
    return "\n".join(out) + "\n" + "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")


def figure(rows: list[dict], finn: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    best = chosen(rows)
    policies = [p for p in ordered(rows) if p in PAPER]
    x = np.arange(len(policies))
    flows = [("open flow (yosys, before place-and-route)", lambda p: best.get(p), "lut", "latency_us"),
             ("FINN estimate", lambda p: finn_key(p, finn), "lut", "latency_us"),
             ("paper (Vivado)", lambda p: dict(lut=PAPER[p][0], latency_us=PAPER[p][4]), "lut", "latency_us")]
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for k, (label, get, lut, lat) in enumerate(flows):
        rows_ = [get(p) for p in policies]
        axes[0].bar(x + (k - 1) * 0.27, [r[lut] if r else 0 for r in rows_], 0.27, label=label)
        axes[1].bar(x + (k - 1) * 0.27, [r[lat] if r else 0 for r in rows_], 0.27, label=label)
    axes[0].axhline(10_400, color="k", lw=0.8, ls="--")
    axes[0].text(len(policies) - 0.5, 9_900, "XC7A15T LUTs", ha="right", va="top", fontsize=8)
    axes[0].set_ylabel("LUT (highest fitting target)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("latency [us]")
    axes[1].set_xticks(x, policies, rotation=30, ha="right")
    axes[0].legend(fontsize=8, loc="upper center", ncol=3)
    axes[0].set_ylim(0, 12_500)
    axes[0].set_title("Paper's Table 1 configurations and reference, padded to 32, XC7A15T at 100 MHz")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "hw_builds" / "bench_open")
    p.add_argument("--finn", type=Path, default=None)
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="run only these policies (exact names, e.g. Hopper 'Hopper reference')")
    p.add_argument("--report", action="store_true",
                   help=f"only write the table and figure from the results.json files under --out and --finn's "
                   f"hw.json, and both as one data file ({DATA}) beside them")
    p.add_argument("--from-data", type=Path, metavar="FILE",
                   help=f"only redraw the table and figure from such a data file (docs/results/{DATA}), beside it")
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th policy from the I-th (parallel runs)")
    p.add_argument("--targets", type=float, nargs="+", default=TARGETS, help="throughput targets [actions/s]")
    p.add_argument("--no-trained", action="store_true", help="leave out the trained Hopper-shaped policy")
    p.add_argument("--no-netlist", action="store_true", help="no netlist simulation (as `qsearch hw --flow open` without --check-netlist)")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds a tool run may take (wall)")
    a = p.parse_args()
    if a.report or a.from_data:
        if a.from_data:
            data = json.loads(a.from_data.read_text())
            out = a.from_data.parent
        else:
            data = gather(a.out, a.finn)
            out = a.out
            (out / DATA).write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
        finn = finn_rows(data["finn"])
        (out / "open_synthesis_table.md").write_text(table(data["open"], finn))
        figure(data["open"], finn, out / "open_synthesis.png")
        print(table(data["open"], finn))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    startup = a.out / "startup"
    startup.mkdir(exist_ok=True)
    tools.yosys(startup, "help\n")
    startup_s = time.perf_counter() - t0
    print(f"yosys start-up: {startup_s:.1f} s (compiled WebAssembly cached from an earlier run or not)", flush=True)
    from policies import warmed_actor

    policies = [(p.name if "reference" in p.name else p.name.split(" h")[0], padded(p.actor, 32))
                for p in paper_policies(reference=True)]
    if not a.no_trained:
        policies.append(("Hopper trained", warmed_actor(QuantBits(6, 2, 2, 8), 11, 3, width=16)))
    # Hopper first (the headline design), then the rest
    policies.sort(key=lambda p: not p[0].startswith("Hopper"))
    i, n = (int(v) for v in a.shard.split("/"))
    policies = policies[i::n]
    if n > 1:
        a.out = a.out / f"shard{i}"
        a.out.mkdir(exist_ok=True)
    rows = []
    t_sweep, cpu_sweep = time.perf_counter(), cpu_s()
    for name, actor in policies:
        if a.only and name not in a.only:
            continue
        # the trained Hopper-shaped policy: only its fully parallel design, beside the random one's
        targets = [1e8] if name == "Hopper trained" else a.targets
        netlist = name.startswith("Hopper") and not a.no_netlist
        rows += sweep(name, model_of(actor), a.out, netlist=netlist, targets=targets,
                      timeout=a.timeout)
        (a.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    total, cpu = time.perf_counter() - t_sweep, cpu_s() - cpu_sweep
    print(f"whole sweep: {total:.0f} s wall, {cpu:.0f} s CPU, {sum(1 for r in rows if 'lut' in r)} designs",
          flush=True)
    (a.out / "results.json").write_text(json.dumps(
        {"startup_s": startup_s, "sweep_wall_s": total, "sweep_cpu_s": cpu, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
