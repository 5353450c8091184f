"""The files of an experiment directory that we write, by name, and how: a lean module (no torch, no
Ray), so that `sweep report` and `sweep dashboard` start fast."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

RESULTS_CSV = "results.csv"  # a row per trial
EPOCHS_CSV = "epochs.csv"  # a line per trial and epoch
BEST_CONFIG = "best_config.yaml"  # the best trial's complete run config
SPEC_FILE = "sweep.yaml"  # the resolved spec, flags applied: what this experiment directory ran
OPTUNA_JOURNAL = "optuna.journal"  # the Optuna study, for optuna-dashboard
REPORT_HTML = "report.html"
CHECKPOINT_FILE = "trial.ckpt"  # in a trial's checkpoint: Lightning's (model, optimizer, schedule, epoch, RNG states)
META_FILE = "trial.json"  # and the epoch it holds, and when the trial first started (a continued trial keeps it)
ENDED = ("completed", "stopped early", "error", "diverged")  # results.csv statuses that a resumed sweep keeps


_restoring: list[Path] = []  # the experiment directory that Tune is restoring a sweep from, while it does


@contextlib.contextmanager
def restoring(experiment_dir: Path):
    """While Tune restores a sweep (Tuner.restore and the fit that continues it), our objects that Tune
    unpickles take their paths from `experiment_dir`, which may not be where the sweep was saved (Tune
    supports moving an experiment directory: so do we)."""
    _restoring.append(experiment_dir)
    try:
        yield
    finally:
        _restoring.pop()


def relocated(experiment_dir: Path) -> Path:
    """Where the experiment directory of the sweep being restored is now."""
    return _restoring[-1] if _restoring else experiment_dir


def write_atomically(path: Path, text: str) -> None:
    """A reader (the report, mid-sweep), a kill mid-write or a power cut never sees half a file: write
    aside under a name of its own (two writers never share one), flush it to disk, rename, and flush the
    directory that holds the new name."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


LOCK = ".sweep.lock"  # held by the process that runs the sweep in this directory


def claim(experiment_dir: Path, new: bool):
    """The experiment directory for this process: made (`new`), or an existing one to continue; locked until
    the process ends, however it ends. Returns the lock's open file."""
    import fcntl

    from text_recognizer.util import UserError

    existed = experiment_dir.exists()
    if not new and not existed:
        raise UserError(f"{experiment_dir}: no such directory")
    experiment_dir.mkdir(parents=True, exist_ok=True)
    lock = open(experiment_dir / LOCK, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        raise UserError(
            f"{experiment_dir}: another sweep is running in it (PID {lock.read().strip() or '?'}); wait for it "
            "to end or stop it, or pass another --name"
        ) from None
    if new and existed:
        lock.close()
        raise UserError(
            f"{experiment_dir} already exists: continue that sweep with `python -m sweep resume {experiment_dir}`, "
            "or pass another --name"
        )
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    # Optuna's journal lock (a symlink to the journal) left by a sweep killed while writing the study: no
    # sweep runs here now, so it is stale. Optuna would wait for it forever once the directory was moved
    # (its grace period reads the time of the link's target, which then no longer exists).
    (experiment_dir / f"{OPTUNA_JOURNAL}.lock").unlink(missing_ok=True)
    return lock


def unclaim_if_empty(experiment_dir: Path) -> None:
    """A sweep that never started (Ray failed, too few GPUs) leaves no directory behind."""
    if experiment_dir.is_dir() and [p.name for p in experiment_dir.iterdir()] == [LOCK]:
        (experiment_dir / LOCK).unlink()
        experiment_dir.rmdir()


def format_cell(value) -> str:
    """A parameter's value as results.csv holds it: JSON for a list or a mapping, '' for None, else str()."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def cell_parser(param: dict):
    """Text of results.csv -> the value, for a parameter as sweep.yaml describes it: one of its listed
    `values`, or the first of its `types` that reads the text (our trainer's flags: `precision: "32"`
    stays a string, `limit_train_batches: 8` an int)."""
    if param.get("values") is not None:
        listed = {format_cell(value): value for value in param["values"]}
        return lambda text: listed.get(text, text)
    readers = {"int": int, "float": float, "bool": lambda t: {"True": True, "False": False}[t], "str": str}

    def parse(text: str):
        if text == "" and "null" in param["types"]:
            return None
        for name in param["types"]:
            try:
                return readers[name](text) if name in readers else json.loads(text)
            except (ValueError, KeyError):
                continue
        return text

    return parse


def read_results(experiment_dir: Path, saved: dict) -> list[dict]:
    """results.csv's rows typed, for the sweep that `saved` (sweep.yaml) describes: parameters by their
    types, metrics and durations as numbers (None where empty), start as a timestamp; [] before the first
    trial has ended (or when the driver was killed before that)."""
    path = experiment_dir / RESULTS_CSV
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    parsers = {name: cell_parser(param) for name, param in saved["params"].items()}
    numbers = {**dict.fromkeys(saved["metrics"], float), "best_epoch": int, "duration_s": float}
    for row in rows:
        row.update({name: parse(row[name]) for name, parse in parsers.items()})
        row.update({key: kind(row[key]) if row[key] != "" else None for key, kind in numbers.items()})
        row.update(epochs=int(row["epochs"]), train_time_s=float(row["train_time_s"]), retries=int(row["retries"]))
        row["start_time"] = datetime.fromisoformat(row["start"]).timestamp() if row["start"] else None
    return rows


def ended_ids(rows) -> set[str]:
    """The trials that ended, which a resumed sweep keeps as they are."""
    return {row["trial_id"] for row in rows if row["status"] in ENDED}


def best_row(rows, metric: str, mode: str) -> dict | None:
    """The one definition of the best trial: the best value of the metric among trials that neither
    failed nor diverged (an interrupted one counts: it ran that far); None when none has a value."""
    best = None
    for row in rows:
        value = row[metric]
        if value is None or row["status"] in ("error", "diverged") or value != value:  # NaN
            continue
        if is_better(value, None if best is None else best[metric], mode):
            best = row
    return best


def is_better(value: float, than: float | None, mode: str) -> bool:
    return than is None or (value > than if mode == "max" else value < than)
