"""What the terminal says of a sweep once its trials have ended, and `sweep best`'s table: from the record."""

from __future__ import annotations

from sweep.record.files import BEST_CONFIG, RESULTS_CSV
from sweep.record.state import Status, SweepState
from sweep.record.storage import child
from sweep.views.exports import results_rows
from sweep.views.progress import metric_text, short


def summary_lines(state: SweepState, experiment: str) -> list[str]:
    """`experiment`: where it is (a directory or a URI)."""
    counts = ", ".join(f"{state.count(status)} {status.value}" for status in Status if status != Status.RUNNING)
    retries = sum(t.retries for t in state.trials.values())
    lines = [f"\n{len(state.trials)} trials: {counts}" + (f"; {retries} retries of lost trials" if retries else "")]
    lines += [f"  FAILED trial {t.number}: {t.reason}" for t in state.trials.values() if t.status == Status.FAILED]
    lines.append(f"results:     {child(experiment, RESULTS_CSV)}")
    if state.metric is None:
        lines.append("best:        none: a sweep without a metric has no best (results.csv lists what each logged)")
        return lines
    best = state.best()
    if best is None:
        lines.append(f"best:        none: no trial reported {state.metric} (see the failures above)")
        return lines
    reached = state.target_reached()
    if reached is not None:
        lines.append(f"target {state.metric} {'>=' if state.mode == 'max' else '<='} {state.spec['target']:g} reached "
                     f"by trial {reached.number}: no new trial started after that ({len(state.trials)} of "
                     f"{state.num_samples} trials ran)")  # fmt: skip
    value = best.best(state.metric, state.mode)
    unit = state.spec["unit"]
    where = "in its summary" if value.step is None else f"at {unit} {value.step}"
    ran = f"{best.steps} of {state.spec['max_steps']} {unit}s" if state.spec["max_steps"] else f"{best.steps} {unit}s"
    # An interrupted trial may end better, or worse than another, once the sweep is resumed.
    note = "; INTERRUPTED, not finished: resuming the sweep finishes it" if best.status == Status.INTERRUPTED else ""
    params = ", ".join(f"{name}={short(best.params.get(name))}" for name in state.spec["params"])
    lines.append(f"best trial {best.number}: {params}")
    lines.append(f"  {state.metric}={metric_text(value.value)} {where}, {ran} run{note}")
    lines.append(f"best config: {child(experiment, BEST_CONFIG)}")
    lines.append(f"final run:   sweep final {experiment}")
    return lines


def best_table(state: SweepState) -> str:
    """`sweep best`: every trial of this sweep, then the warm start's history (marked), as a table."""
    import pandas as pd

    rows = [{k: v for k, v in row.items() if k not in ("start", "reason")} for row in results_rows(state)]
    text = ""
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_rows", None):
        if rows:
            text = pd.DataFrame(rows).to_string(index=False)
        if state.warm:
            warm = [{"trial": t.number, "from": t.origin, "status": t.status.value, **t.params,
                     state.metric: t.value(state.metric, state.mode)} for t in state.warm.values()]  # fmt: skip
            text += (
                f"\n\nwarm start (earlier sweeps' trials, history only):\n{pd.DataFrame(warm).to_string(index=False)}"
            )
    return text
