"""results.csv, epochs.csv, best_config.yaml and TensorBoard's files: exports of the record, made again
whenever a trial ends and when a run or resume ends. Values are as the trials reported them; only the
terminal and the report round them."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import yaml

from sweep.record.files import BEST_CONFIG, EPOCHS_CSV, RESULTS_CSV, trial_dir, write_atomically
from sweep.record.state import SweepState, Trial, number
from sweep.record.storage import child
from sweep.spec.command import Program


def metric_columns(state: SweepState) -> list[str]:
    """Our trainer's metrics; a program's: the sweep's metric first, then every other one it logged."""
    if state.spec["kind"] == "trainer":
        return list(state.spec["metrics"])
    logged = {key for t in state.trials.values() for r in t.results for key in r["metrics"]}
    logged |= {key for t in state.trials.values() for key, value in t.summary.items() if number(value) is not None}
    first = [state.metric] if state.metric else []
    return first + sorted(logged - set(first))


def trial_metrics(state: SweepState, trial: Trial, columns: list[str]) -> dict:
    """A trial's row of metrics: our trainer's at its best epoch (its last, without a metric); a program's
    metric as W&B's search takes it (its best, summary included) and the others as W&B's summary has them
    (the last logged value, or what the program wrote to its summary)."""
    best = trial.best(state.metric, state.mode)
    if state.spec["kind"] == "trainer":  # a sweep without a metric: its last epoch's
        at = best.metrics if best else (trial.results[-1]["metrics"] if trial.results and not state.metric else {})
        return {column: at.get(column) for column in columns}
    row = {}
    for column in columns:
        logged = [r["metrics"][column] for r in trial.results if column in r["metrics"]]
        summary = number(trial.summary.get(column))
        row[column] = summary if summary is not None else (logged[-1] if logged else None)
    if state.metric:
        row[state.metric] = best.value if best else None
    return row


def results_rows(state: SweepState) -> list[dict]:
    """One row per trial of this sweep, by number: what results.csv holds, in Python's types."""
    columns = metric_columns(state)
    rows = []
    for trial in sorted(state.trials.values(), key=lambda t: t.number):
        best = trial.best(state.metric, state.mode)
        end = trial.ended or (trial.results[-1]["time"] if trial.results else None)
        rows.append({
            "trial": trial.number,
            "status": trial.status.value,
            **{name: trial.params.get(name) for name in state.spec["params"]},
            **trial_metrics(state, trial, columns),
            f"best_{state.spec['unit']}": ("summary" if best.step is None else best.step) if best else None,
            f"{state.spec['unit']}s": trial.steps,
            "start": datetime.fromtimestamp(trial.started).isoformat(timespec="seconds") if trial.started else "",
            "duration_s": round(end - trial.started, 2) if end and trial.started else None,
            "train_time_s": round(trial.train_time_s, 2),
            "node": trial.node,
            "attempts": trial.attempts,
            "retries": trial.retries,
            "reason": trial.reason,
        })  # fmt: skip
    return rows


def cell(value) -> str:
    """A value as a CSV cell: JSON-like text for lists and mappings (as the program got them), '' for None."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return str(value)  # a float's shortest exact form: 1.0361 stays 1.0361


def csv_text(rows: list[dict]) -> str:
    text = io.StringIO()
    if rows:
        writer = csv.DictWriter(text, list(rows[0]))
        writer.writeheader()
        writer.writerows({key: cell(value) for key, value in row.items()} for row in rows)
    return text.getvalue()


def epochs_rows(state: SweepState) -> list[dict]:
    """A line per trial and reported step (its latest attempt's): the learning curves."""
    columns = metric_columns(state)
    unit = state.spec["unit"]
    return [
        {"trial": t.number, unit: r["step"], **{c: r["metrics"].get(c) for c in columns},
         f"{unit}_time_s": round(r["step_time_s"], 4), "node": r["node"]}
        for t in sorted(state.trials.values(), key=lambda t: t.number)
        for r in t.results
    ]  # fmt: skip


def trial_config(spec: dict, values: dict) -> dict:
    """What a trial ran with: our trainer's complete run config, or a program's arguments as W&B nests them."""
    if spec["program"] is None:
        return {**spec["base_config"], **values}
    program = spec["program"]
    nested = {name: tuple(path) for name, path in program["nested"].items()}
    return Program(**{**program, "command": tuple(program["command"]), "nested": nested}).args(values)


def best_config_text(state: SweepState, trial: Trial, experiment: str | Path) -> str:
    spec = state.spec
    best = trial.best(state.metric, state.mode)
    where = "its summary" if best.step is None else f"{spec['unit']} {best.step} of {trial.steps}"
    if spec["program"] is not None:
        how = f"# The program's arguments: `sweep final {experiment}` runs it with them.\n"
    else:
        how = (f"# A complete run config: `sweep final {experiment}`, or\n"
               f"#   python training/run_experiment.py --config {child(str(experiment), BEST_CONFIG)}\n")  # fmt: skip
    header = (
        f"# Best trial {trial.number} of sweep '{spec['name']}' ({spec['source']}): {state.metric}={best.value} "
        f"at {where} ({trial.status.value}).\n{how}"
    )
    return header + yaml.safe_dump(trial_config(spec, trial.params), sort_keys=False)


def write_exports(experiment_dir: Path, state: SweepState, where: str | None = None) -> None:
    """The exports, into `experiment_dir` (the experiment's local directory); `where`: the experiment as its
    commands name it, where that is another (a URI)."""
    write_atomically(experiment_dir / RESULTS_CSV, csv_text(results_rows(state)))
    write_atomically(experiment_dir / EPOCHS_CSV, csv_text(epochs_rows(state)))
    best = state.best()
    if best is not None:
        write_atomically(experiment_dir / BEST_CONFIG, best_config_text(state, best, where or experiment_dir))


def write_tensorboard(experiment_dir: Path, trial: Trial) -> None:
    """The trial's reported metrics as TensorBoard scalars in its directory: `tensorboard --logdir DIR`.
    TensorBoard's own event writer, not tensorboardX's, which imports torch: seconds of the driver's time and
    ~900 MB of its memory at the first trial's end, while it should be starting the next."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(trial_dir(experiment_dir, trial.number)))
    for result in trial.results:
        values = [Summary.Value(tag=key, simple_value=value) for key, value in result["metrics"].items()
                  if number(value) is not None]  # fmt: skip
        writer.add_event(Event(wall_time=result["time"], step=result["step"], summary=Summary(value=values)))
    writer.close()
