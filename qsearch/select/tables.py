"""A selection record as text: each stage's candidates with their states, the paper's Table 1, and
what the selection cost. `qsearch select` prints them, selection.md and the report hold them."""
from __future__ import annotations

from qsearch.select import selection_record as rec
from qsearch.select.stages import LABEL


def stage_table(stage: rec.StageRecord, rule: str) -> str:
    """A stage's candidates per environment: state, returns, the rule's figure; the pick marked.
    Values never evaluated (not needed, stopped: not needed) show no verdict."""
    label = LABEL[stage.stage]
    lines = [f"Stage {stage.stage}", f"rule: {rule}"]
    for e in stage.envs:
        lines.append(f"{e.env_id} ({label}), FP32 {e.fp32} over {e.fp32.n} seeds:")
        for v in e.values:
            head = f"  {label} {v.value:>4}"
            if v.state == rec.NOT_NEEDED:
                lines.append(f"{head}  {'not trained':>20}  not needed: {v.detail}")
                continue
            s = v.stats
            why = v.detail
            if v.margin is not None:
                why += f", margin {v.margin:+.4g}"
            mark = "  <- selected" if v.value == e.chosen else ""
            lines.append(f"{head}  {str(s) if s.n else '-':>20}  {s.n} seeds  {v.state:<19}  {why}{mark}".rstrip())
        if e.chosen is None:
            lines.append("  no configuration matches FP32 in this stage")
    return "\n".join(lines)


def selection_table(record: rec.SelectionRecord) -> str:
    """The paper's Table 1: the selected configuration per environment beside FP32."""
    head = ("environment", "width", "core bits", "input bits", "return mean +- std", "FP32 mean +- std")
    rows = [(env, str(s.width), str(s.core_bits), str(s.input_bits), str(s.stats), str(s.fp32))
            for env, s in sorted(record.selected.items())]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = [f"Selection {record.name} (parity rule {record.rule})",
             "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in rows]
    for env, why in sorted(record.unmatched.items()):
        lines.append(f"{env}: {why}; nothing selected")
    for env, v in sorted(record.lut_picks.items()):
        lines.append(f"{env}: smallest logic circuit matching FP32: {record.describe(v.configuration)}, {v.stats}")
    for e in (record.stage(rec.LUT_STAGE).envs if record.stage(rec.LUT_STAGE) else ()):
        if e.chosen is None:
            lines.append(f"{e.env_id}: no logic circuit matches FP32")
    for stage in record.stages:  # said plainly: decisions on less than the full evidence
        for e in stage.envs:
            lines += [f"{e.env_id}: {LABEL[stage.stage]} {v.value} decided no match by {v.detail}"
                      for v in e.values if v.decided_early]
    return "\n".join(lines)


def cost_line(cost: rec.Cost) -> str:
    """What a selection trained, beside the full grid of its stages."""
    share = f" ({cost.spent / cost.grid:.0%} of it)" if cost.grid else ""
    return (f"environment steps: {cost.spent:,} trained by this selection ({cost.trained} trials, "
            f"{cost.stopped} of them stopped early), {cost.reused:,} reused from the tracking store; "
            f"the full grid of these stages: {cost.grid:,}{share}")


def markdown(record: rec.SelectionRecord) -> str:
    """selection.md: every stage's table, Table 1 and the cost."""
    parts = [stage_table(s, record.rule) for s in record.stages]
    return "\n\n".join(parts + [selection_table(record), cost_line(record.cost)]) + "\n"
