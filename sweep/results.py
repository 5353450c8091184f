"""results.csv and best_config.yaml, rewritten as each trial ends so that an interrupted sweep keeps them,
and epochs.csv, a line per trial and epoch as it is reported (the report's learning curves)."""

from __future__ import annotations

import csv
import io
import math
import time
from datetime import datetime
from pathlib import Path

import yaml
from ray import tune

from sweep import files
from sweep.files import BEST_CONFIG, EPOCHS_CSV, RESULTS_CSV, format_cell, is_better, write_atomically
from sweep.space import SweepSpec

# Around the parameters' and the metrics' columns. For a program, an "epoch" is one logged value of the
# metric (W&B's iteration, ASHA's unit of time).
RESULT_COLUMNS = ["best_epoch", "epochs", "start", "duration_s", "train_time_s", "node", "retries", "error"]


def epoch_columns(spec: SweepSpec) -> list[str]:
    return ["trial_id", "epoch", *spec.metrics, "epoch_time_s", "node"]


def result_columns(spec: SweepSpec) -> list[str]:
    return ["trial_id", "status", *spec.params, *spec.metrics, *RESULT_COLUMNS]


class ResultsWriter(tune.Callback):
    """A Tune callback on the driver: one row per trial, written to disk whenever a trial ends.

    Tune pickles it with the experiment; when a sweep resumes (Tuner.restore) or grows, `setup` reads
    the rows back from results.csv. Rows of ended trials are then final: Tune's own record of the
    experiment is saved every ~10 s and may still have such a trial as running.
    """

    def __init__(self, spec: SweepSpec, experiment_dir: Path):
        self.spec = spec
        self.experiment_dir = experiment_dir
        self.rows: dict[str, dict] = {}
        self.ended: set[str] = set()
        self.restored = False  # rows read back, not yet matched against Tune's trials

    def __setstate__(self, state: dict):  # Tune unpickles it to resume the sweep, maybe moved since
        self.__dict__.update(state, experiment_dir=files.relocated(state["experiment_dir"]))

    def setup(self, **info):
        if not self.rows and (self.experiment_dir / RESULTS_CSV).exists():
            self.rows = {row["trial_id"]: row for row in load_rows(self.experiment_dir, self.spec)}
            self.ended = files.ended_ids(self.rows.values())
            self.restored = True
        if not (self.experiment_dir / EPOCHS_CSV).exists():  # its header: a reader never sees an empty file
            header = io.StringIO()
            csv.writer(header).writerow(epoch_columns(self.spec))
            write_atomically(self.experiment_dir / EPOCHS_CSV, header.getvalue())

    def on_step_begin(self, iteration, trials, **info):
        if self.restored:  # a row of a trial that Tune's saved state does not know: it starts again as new
            known = {trial.trial_id: trial for trial in trials}
            ended = files.ended_ids(self.rows.values())
            self.rows = {k: row for k, row in self.rows.items() if k in known or k in ended}
            # A trial Tune continues that started after results.csv was last written: its row from the epochs
            # it reported, so that a resume cut off before it reports again still lists it (interrupted).
            rowless = known.keys() - self.rows.keys()
            for line in read_epochs(self.experiment_dir, self.spec):
                if line["trial_id"] in rowless:
                    row = self.row(known[line["trial_id"]])
                    row.update(start_time=known[line["trial_id"]].last_result.get("trial_start"), node=line["node"])
                    self.record(row, line)
            self.restored = False

    def row(self, trial) -> dict:
        if trial.trial_id not in self.rows:
            self.rows[trial.trial_id] = {
                "trial_id": trial.trial_id,
                "status": "running",
                **trial.config,  # the values that ran (see SweepSearch)
                **dict.fromkeys(self.spec.metrics),
                "best_epoch": None,
                "epochs": 0,
                "start": None,
                "start_time": None,
                "duration_s": None,
                "train_time_s": 0.0,
                "node": "",
                "retries": 0,
                "error": "",
            }
        return self.rows[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.trial_id in self.ended:
            return
        row = self.row(trial)
        row["status"] = "running"  # also an interrupted trial that continues
        row["start_time"] = result["trial_start"]
        row["node"] = result["node"]
        row["duration_s"] = time.time() - result["trial_start"]
        if result["failed"]:  # the training code raised, the program failed: the trial ends
            where = f"output: {result['log']}" if result.get("log") else f"traceback: {Path(trial.path) / 'error.txt'}"
            row["error"] = f"{result['failed']} ({where})"
            return
        self.record(row, result)
        row["stopped"] = result.get("done", False)  # the scheduler stops it with this result
        with open(self.experiment_dir / EPOCHS_CSV, "a", newline="") as f:  # one short line: never half written
            csv.writer(f).writerow([trial.trial_id, *(result[key] for key in epoch_columns(self.spec)[1:])])

    def record(self, row: dict, result: dict) -> None:
        """An epoch's result (a trial's report, or a line of epochs.csv) in the trial's row."""
        score = result[self.spec.metric]
        if not result["diverged"] and is_better(score, row[self.spec.metric], self.spec.mode):
            row.update({metric: result[metric] for metric in self.spec.metrics}, best_epoch=result["epoch"])
        row["diverged"] = result["diverged"]
        row["epochs"] = result["epoch"]
        row["train_time_s"] += result["epoch_time_s"]

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Tune retries the trial (its worker or node was lost), from its latest checkpoint."""
        self.row(trial)["retries"] += 1

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id in self.ended:
            return
        row = self.row(trial)
        if row["error"]:
            row["status"] = "error"
        elif row.get("diverged"):
            row["status"] = "diverged"
        elif self.spec.max_epochs:  # our trainer: ASHA also stops a trial at its last epoch
            row["status"] = "completed" if row["epochs"] >= self.spec.max_epochs else "stopped early"
        else:  # a program ends by itself, or is stopped
            row["status"] = "stopped early" if row.get("stopped") else "completed"
        self.end(row)

    def on_trial_error(self, iteration, trials, trial, **info):
        """Tune gave up on the trial: its worker or node was lost more than max_failures times."""
        if trial.trial_id in self.ended:
            return
        row = self.row(trial)
        row["status"] = "error"
        row["error"] = error_summary(trial)
        self.end(row)

    def end(self, row: dict) -> None:
        if row["start_time"] is not None:
            row["duration_s"] = time.time() - row["start_time"]
        self.ended.add(row["trial_id"])
        self.write()

    def finish(self) -> None:
        """At the end of the sweep: trials still marked running were cut off (Ctrl-C, a failure)."""
        for row in self.rows.values():
            if row["status"] == "running":
                row["status"] = "interrupted"
        self.write()

    def on_experiment_end(self, trials, **info):
        self.finish()

    def ordered_rows(self) -> list[dict]:
        return ordered(self.rows.values())

    def best_row(self) -> dict | None:
        return best_row(self.rows.values(), self.spec)

    def write(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, result_columns(self.spec), extrasaction="ignore")
        writer.writeheader()
        for row in self.ordered_rows():
            writer.writerow(format_row(row, self.spec))
        write_atomically(self.experiment_dir / RESULTS_CSV, text.getvalue())
        best = self.best_row()
        if best is not None:
            write_best_config(self.spec, best, self.experiment_dir / BEST_CONFIG)


def ordered(rows) -> list[dict]:
    return sorted(rows, key=lambda r: (r["start_time"] is None, r["start_time"] or 0))


def best_row(rows, spec: SweepSpec) -> dict | None:
    return files.best_row(rows, spec.metric, spec.mode)


def recorded_results(rows: list[dict], spec: SweepSpec) -> dict[str, dict]:
    """Each ended trial's last result, as it reports it again when Tune's record of the experiment (saved
    every ~10 s) is behind results.csv and a resumed sweep runs it once more: it reports this and ends."""
    recorded, ended = {}, files.ended_ids(rows)
    for row in rows:
        if row["trial_id"] in ended:
            metrics = {m: math.nan if row[m] is None else row[m] for m in spec.metrics}
            recorded[row["trial_id"]] = {
                **metrics,
                **{"epoch": row["epochs"], "epoch_time_s": 0.0, "trial_start": row["start_time"] or 0.0},
                **{"node": row["node"], "diverged": row["status"] == "diverged", "failed": "", "ended": True},
            }
    return recorded


def read_epochs(experiment_dir: Path, spec: SweepSpec) -> list[dict]:
    """epochs.csv's lines typed as a trial reports them; `diverged` where the metric is not finite."""
    with open(experiment_dir / EPOCHS_CSV, newline="") as f:
        lines = list(csv.DictReader(f))
    for line in lines:
        line.update({metric: float(line[metric]) for metric in spec.metrics})
        line.update(epoch=int(line["epoch"]), epoch_time_s=float(line["epoch_time_s"]))
        line["diverged"] = not math.isfinite(line[spec.metric])
    return lines


def load_rows(experiment_dir: Path, spec: SweepSpec) -> list[dict]:
    """results.csv's rows, typed as ResultsWriter keeps them; [] before any trial ended."""
    return files.read_results(experiment_dir, spec.columns)


def error_summary(trial) -> str:
    """The exception line of a failed trial, and where its whole traceback is kept."""
    kept = Path(trial.path) / "error.txt"  # in the experiment directory, once Tune has synced it
    try:  # Tune has just written the traceback to the trial's local staging directory: Trial.error_file,
        # of Ray's Trial (a DeveloperAPI; Ray's version is pinned in pyproject.toml)
        lines = [line.strip() for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):
        lines = []
    return f"{lines[-1]} (traceback: {kept})" if lines else f"traceback: {kept}"


def format_row(row: dict, spec: SweepSpec) -> dict:
    out = dict(row)
    if row["start_time"] is not None:
        out["start"] = datetime.fromtimestamp(row["start_time"]).isoformat(timespec="milliseconds")
    for key in spec.params:
        out[key] = format_cell(row[key])
    for key in spec.metrics:
        if row[key] is not None:
            out[key] = spec.metric_text(row[key])
    for key in ("duration_s", "train_time_s"):
        if row[key] is not None:
            out[key] = f"{row[key]:.2f}"
    return out


def write_best_config(spec: SweepSpec, best: dict, path: Path) -> None:
    config = spec.trial_config({k: best[k] for k in spec.params})
    if spec.program:
        how = f"# The program's arguments: python -m sweep final {path.parent} runs it with them.\n"
    else:
        how = (
            f"# A complete run config: python -m sweep final {path.parent}   or\n"
            f"#   python training/run_experiment.py --config {path}\n"
        )
    header = (
        f"# Best trial {best['trial_id']} of sweep '{spec.name}' ({spec.path}): {spec.metric}="
        f"{spec.metric_text(best[spec.metric])} at {spec.unit} {best['best_epoch']} of {best['epochs']} "
        f"({best['status']}).\n{how}"
    )
    write_atomically(path, header + yaml.safe_dump(config, sort_keys=False))
