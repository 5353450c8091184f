"""An experiment directory's names, and how its files are written: whole, to disk, with the user's umask;
and the lock that says a sweep's driver is running in it. No Ray, no torch: every command reads these."""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path

from text_recognizer.util import UserError

EVENTS = "events.jsonl"  # the record: everything else here is made from it
SOURCE = "source.yaml"  # a copy of the sweep file it started with (an edit adds source-2.yaml, ...)
RESULTS_CSV = "results.csv"  # a row per trial (an export of the record)
EPOCHS_CSV = "epochs.csv"  # a line per trial and reported step (an export of the record)
BEST_CONFIG = "best_config.yaml"  # the best trial's complete run config
OPTUNA_JOURNAL = "optuna.journal"  # the Optuna study, rebuilt from the record by each run or resume
REPORT_HTML = "report.html"
TRIALS = "trials"  # trials/<number>/: each trial's checkpoint and files, named by its Optuna trial number
CHECKPOINT = "checkpoint.ckpt"  # in a trial's directory: Lightning's, with the epoch it holds
LOCK = ".sweep.lock"  # held by the driver that runs the sweep in this directory


def trial_name(number: int) -> str:
    """A trial's directory in the experiment's: trials/0003."""
    return f"{TRIALS}/{number:04d}"


def trial_dir(experiment_dir: Path, number: int) -> Path:
    return experiment_dir / trial_name(number)


def write_atomically(path: Path, text: str) -> None:
    """A reader (the report, mid-sweep), a kill mid-write or a power cut never sees half a file: write
    aside under a name of its own (two writers never share one), flush it to disk, rename, and flush the
    directory that holds the new name. Created with mode 0666 less the umask, as `open` would: another
    user's report or TensorBoard on a shared storage path can read it."""
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def claim(experiment_dir: Path, new: bool):
    """The experiment directory for this process: made (`new`), or an existing sweep's to continue; locked
    until the process ends, however it ends. Returns the lock's open file."""
    existed = experiment_dir.exists()
    if not new and not (experiment_dir / EVENTS).exists():
        raise UserError(f"{experiment_dir}: not a sweep's experiment directory (no record: {EVENTS})")
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
            f"{experiment_dir} already exists: continue that sweep with `sweep resume {experiment_dir}`, "
            "or pass another --name"
        )
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def held(experiment_dir: Path) -> bool:
    """Whether a driver holds the directory's lock now (a sweep runs there)."""
    try:
        with open(experiment_dir / LOCK) as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    return False


def unclaim_if_unstarted(experiment_dir: Path) -> None:
    """A new sweep that never asked for a trial (Ray failed to start, too few GPUs) leaves no directory behind:
    what is in it (the lock, the file's copy, a record of no trial) is the driver's own."""
    import shutil

    from sweep.record.events import read_events  # which reads this module's names

    if experiment_dir.is_dir() and not any(e["event"] == "trial" for e in read_events(experiment_dir)):
        shutil.rmtree(experiment_dir)
