"""results.csv and best_config.yaml, rewritten as each trial ends so that an interrupted sweep keeps them,
and epochs.csv, a line per trial and epoch as it is reported (the report's learning curves)."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from pathlib import Path

import yaml
from ray import tune

from sweep.files import BEST_CONFIG, EPOCHS_CSV, RESULTS_CSV, write_atomically
from sweep.space import SweepSpec

EPOCH_COLUMNS = ["trial_id", "epoch", "val_acc", "val_loss", "epoch_time_s", "node"]
BASE_COLUMNS = [
    "trial_id",
    "status",
    "val_acc",
    "val_loss",
    "best_epoch",
    "epochs",
    "start",
    "duration_s",
    "train_time_s",
    "node",
    "retries",
    "error",
]


def is_better(value: float, than: float | None, mode: str) -> bool:
    return than is None or (value > than if mode == "max" else value < than)


class ResultsWriter(tune.Callback):
    """A Tune callback on the driver: one row per trial, written to disk whenever a trial ends."""

    def __init__(self, spec: SweepSpec, experiment_dir: Path):
        self.spec = spec
        self.experiment_dir = experiment_dir
        self.rows: dict[str, dict] = {}
        with open(experiment_dir / EPOCHS_CSV, "w", newline="") as f:
            csv.writer(f).writerow(EPOCH_COLUMNS)

    def row(self, trial) -> dict:
        if trial.trial_id not in self.rows:
            self.rows[trial.trial_id] = {
                "trial_id": trial.trial_id,
                "status": "running",
                **trial.config,  # the values that ran (see SweepSearch)
                "val_acc": None,
                "val_loss": None,
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
        row = self.row(trial)
        row["start_time"] = result["trial_start"]
        row["node"] = result["node"]
        row["duration_s"] = time.time() - result["trial_start"]
        if result["failed"]:  # the training code raised: the trial ends (see run_trial)
            row["error"] = f"{result['failed']} (traceback: {Path(trial.path) / 'error.txt'})"
            return
        score = result[self.spec.metric]
        if not result["diverged"] and is_better(score, row[self.spec.metric], self.spec.mode):
            row.update(val_acc=result["val_acc"], val_loss=result["val_loss"], best_epoch=result["epoch"])
        row["diverged"] = result["diverged"]
        row["epochs"] = result["epoch"]
        row["train_time_s"] += result["epoch_time_s"]
        with open(self.experiment_dir / EPOCHS_CSV, "a", newline="") as f:  # one short line: never half written
            csv.writer(f).writerow([trial.trial_id, *(result[key] for key in EPOCH_COLUMNS[1:])])

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Tune retries the trial (its worker or node was lost), from its latest checkpoint."""
        self.row(trial)["retries"] += 1

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self.row(trial)
        if row["error"]:
            row["status"] = "error"
        elif row.get("diverged"):
            row["status"] = "diverged"
        else:
            row["status"] = "completed" if row["epochs"] >= self.spec.max_epochs else "stopped early"
        self.end(row)

    def on_trial_error(self, iteration, trials, trial, **info):
        """Tune gave up on the trial: its worker or node was lost more than max_failures times."""
        row = self.row(trial)
        row["status"] = "error"
        row["error"] = error_summary(trial)
        self.end(row)

    def end(self, row: dict) -> None:
        if row["start_time"] is not None:
            row["duration_s"] = time.time() - row["start_time"]
        self.write()

    def finish(self) -> None:
        """At the end of the sweep: trials still marked running were cut off (Ctrl-C, a failure)."""
        for row in self.rows.values():
            if row["status"] == "running":
                row["status"] = "interrupted"
        self.write()

    def ordered_rows(self) -> list[dict]:
        return sorted(self.rows.values(), key=lambda r: (r["start_time"] is None, r["start_time"] or 0))

    def best_row(self) -> dict | None:
        best = None
        key = self.spec.metric
        for row in self.rows.values():
            if row[key] is not None and row["status"] not in ("error", "diverged"):
                if best is None or is_better(row[key], best[key], self.spec.mode):
                    best = row
        return best

    def write(self) -> None:
        columns = BASE_COLUMNS[:2] + list(self.spec.params) + BASE_COLUMNS[2:]
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, extrasaction="ignore")
        writer.writeheader()
        for row in self.ordered_rows():
            writer.writerow(format_row(row))
        write_atomically(self.experiment_dir / RESULTS_CSV, text.getvalue())
        best = self.best_row()
        if best is not None:
            write_best_config(self.spec, best, self.experiment_dir / BEST_CONFIG)


def error_summary(trial) -> str:
    """The exception line of a failed trial, and where its whole traceback is kept."""
    kept = Path(trial.path) / "error.txt"  # in the experiment directory, once Tune has synced it
    try:  # Tune has just written the traceback to the trial's local staging directory
        lines = [line.strip() for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):
        lines = []
    return f"{lines[-1]} (traceback: {kept})" if lines else f"traceback: {kept}"


def format_row(row: dict) -> dict:
    out = dict(row)
    if row["start_time"] is not None:
        out["start"] = datetime.fromtimestamp(row["start_time"]).isoformat(timespec="milliseconds")
    for key in ("val_acc", "val_loss"):
        if row[key] is not None:
            out[key] = f"{row[key]:.4f}"
    for key in ("duration_s", "train_time_s"):
        if row[key] is not None:
            out[key] = f"{row[key]:.2f}"
    return out


def write_best_config(spec: SweepSpec, best: dict, path: Path) -> None:
    config = {**spec.base_config, **{k: best[k] for k in spec.params}}
    header = (
        f"# Best trial {best['trial_id']} of sweep '{spec.name}' ({spec.path}): {spec.metric}="
        f"{best[spec.metric]:.4f} at epoch {best['best_epoch']} of {best['epochs']} ({best['status']}).\n"
        f"# A complete run config: python -m sweep final {path.parent}   or\n"
        f"#   python training/run_experiment.py --config {path}\n"
    )
    write_atomically(path, header + yaml.safe_dump(config, sort_keys=False))
