"""The files of an experiment directory that we write, by name, and how: a lean module (no torch, no
Ray), so that `sweep report` and `sweep dashboard` start fast."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

RESULTS_CSV = "results.csv"  # a row per trial
EPOCHS_CSV = "epochs.csv"  # a line per trial and epoch
BEST_CONFIG = "best_config.yaml"  # the best trial's complete run config
SPEC_FILE = "sweep.yaml"  # the resolved spec, flags applied: what this experiment directory ran
OPTUNA_JOURNAL = "optuna.journal"  # the Optuna study, for optuna-dashboard
REPORT_HTML = "report.html"
ENDED = ("completed", "stopped early", "error", "diverged")  # results.csv statuses that a resumed sweep keeps


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
    return lock


def unclaim_if_empty(experiment_dir: Path) -> None:
    """A sweep that never started (Ray failed, too few GPUs) leaves no directory behind."""
    if experiment_dir.is_dir() and [p.name for p in experiment_dir.iterdir()] == [LOCK]:
        (experiment_dir / LOCK).unlink()
        experiment_dir.rmdir()


def parse_cell(text: str):
    """A parameter's value as results.csv writes it: an int, a float, or the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
