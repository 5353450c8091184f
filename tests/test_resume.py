"""A sweep whose driver is killed (SIGKILL to its process group, as the OOM killer or a lost session would),
then `sweep resume`: ended trials kept as they were, running ones continued from their checkpoints, the
number of trials asked for; then `resume --num-samples` grows it. A real local Ray, real trials."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

from tests.conftest import RAY_ENV, ROOT, kill_all, load_study, run_cli

pytestmark = pytest.mark.slow


def read_csv(path) -> list[dict]:
    return list(csv.DictReader(open(path))) if path.exists() else []


def epochs_by_trial(lines: list[dict]) -> dict[str, list[int]]:
    epochs = defaultdict(list)
    for line in lines:
        epochs[line["trial_id"]].append(int(line["epoch"]))
    return epochs


def kill_sweep_mid_way(experiment_dir, head, space: str = "resumable.yaml", ended_before: int = 2):
    """Start the sweep (from the repository's root, where programs are) on the shared Ray node `head`;
    once `ended_before` trials have ended and another has trained 3 epochs, SIGKILL the driver's process
    group and every process it started (as the OOM killer or a lost session would: Ray then ends the
    sweep's trial workers). Returns results.csv's rows and epochs.csv's lines then."""
    command = [sys.executable, "-m", "sweep", "run", str(ROOT / "tests/spaces" / space), "--checkpoint-interval",
               "0", "--storage-path", str(experiment_dir.parent), "--name", experiment_dir.name, "--address",
               head.address]  # fmt: skip
    sweep = subprocess.Popen(command, cwd=ROOT, env=RAY_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline and sweep.poll() is None, "the sweep ended before it could be killed"
        ended = {row["trial_id"] for row in read_csv(experiment_dir / "results.csv") if row["status"] == "completed"}
        running = {k: v for k, v in epochs_by_trial(read_csv(experiment_dir / "epochs.csv")).items() if k not in ended}
        if len(ended) >= ended_before and running and max(map(len, running.values())) >= 3:
            break
        time.sleep(0.05)
    tree = [psutil.Process(sweep.pid), *psutil.Process(sweep.pid).children(recursive=True)]
    os.killpg(sweep.pid, signal.SIGKILL)
    kill_all(tree)  # Ray's own processes too: as after a reboot
    sweep.wait()
    return read_csv(experiment_dir / "results.csv"), read_csv(experiment_dir / "epochs.csv")


def checkpointed_epochs(experiment_dir) -> dict[str, int]:
    """Each trial's newest checkpoint's epoch, once the killed sweep's trial workers are gone: Ray ends them
    a moment after their driver, and one may save a checkpoint of an epoch the driver never heard of."""

    def newest() -> dict[str, int]:
        found = {}
        for meta in experiment_dir.glob("run_trial_*/checkpoint_*/trial.json"):
            trial_id = meta.parts[-3].split("_")[2]
            with contextlib.suppress(OSError, ValueError):  # being copied, or deleted as a newer one came
                found[trial_id] = max(found.get(trial_id, 0), json.loads(meta.read_text())["epoch"])
        return found

    seen, since, deadline = newest(), time.monotonic(), time.monotonic() + 60
    while time.monotonic() - since < 2:  # no new checkpoint for 2 s (a trial saves one per epoch)
        assert time.monotonic() < deadline, "the killed sweep's trials still save checkpoints after 60 s"
        time.sleep(0.2)
        if (now := newest()) != seen:
            seen, since = now, time.monotonic()
    return seen


@pytest.fixture
def busy_machine():
    """A process that keeps a core busy, as other work on a shared machine does: with two trials on the
    two cores, Tune's record of the experiment (saved every ~10 s) lags results.csv more. (Two of them
    starve Ray's own processes on 2 cores, and trials hardly run at all.)"""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
    yield
    for hog in hogs:
        hog.kill()
        hog.wait()


def assert_resumed(run, experiment_dir, ended_then: dict, epochs_then: list[dict], checkpointed: dict[str, int],
                   trials: int, epochs: str) -> int:  # fmt: skip
    """Every trial done, the ended ones untouched and never run again, the interrupted ones continued from
    the checkpoint in Tune's record of them (at most the epoch they were in is trained again; Tune's record
    is up to ~10 s old, so a trial younger than that starts again), no step told to Optuna twice, no epoch
    skipped but those that a checkpoint holds (`checkpointed`, newest per trial, saved after the driver
    heard its last result). Returns how many interrupted trials continued from a checkpoint."""
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "resuming (" in run.stdout.splitlines()[0]
    assert "is already reported" not in run.stdout + run.stderr  # Optuna's warning for a step told twice
    rows = {row["trial_id"]: row for row in read_csv(experiment_dir / "results.csv")}
    assert len(rows) == trials and all(row["status"] == "completed" for row in rows.values()), rows
    assert all(rows[k] == row for k, row in ended_then.items())  # ended trials: their records unchanged
    epochs_now = epochs_by_trial(read_csv(experiment_dir / "epochs.csv")[len(epochs_then) :])
    assert all(k not in epochs_now for k in ended_then)  # never run again
    continued = 0
    for trial_id, before in epochs_by_trial(epochs_then).items():
        if trial_id not in ended_then:
            newest = max(before[-1], checkpointed.get(trial_id, 0))
            assert epochs_now[trial_id][0] <= newest + 1, (trial_id, before, checkpointed, epochs_now[trial_id])
            continued += epochs_now[trial_id][0] > 1
        assert rows[trial_id]["epochs"] == epochs
    return continued


def test_a_sweep_killed_before_its_first_trial_ended_resumes(tmp_path, busy_machine, ray_head):
    experiment_dir = tmp_path / "killed"
    rows_then, epochs_then = kill_sweep_mid_way(experiment_dir, ray_head, ended_before=0)
    assert not rows_then  # no results.csv yet
    checkpointed = checkpointed_epochs(experiment_dir)
    run = run_cli("-m", "sweep", "resume", str(experiment_dir), cwd=tmp_path, env=RAY_ENV)
    assert_resumed(run, experiment_dir, {}, epochs_then, checkpointed, trials=6, epochs="30")


def test_a_killed_sweep_resumes_and_grows(tmp_path, busy_machine, ray_head):
    experiment_dir = tmp_path / "killed"
    rows_then, epochs_then = kill_sweep_mid_way(experiment_dir, ray_head)
    ended_then = {row["trial_id"]: row for row in rows_then if row["status"] == "completed"}
    checkpointed = checkpointed_epochs(experiment_dir)
    run = run_cli("-m", "sweep", "resume", str(experiment_dir), cwd=tmp_path, env=RAY_ENV)
    assert assert_resumed(run, experiment_dir, ended_then, epochs_then, checkpointed, trials=6, epochs="30") >= 1
    study = load_study(experiment_dir, "resumable_test")
    states = [trial.state.name for trial in study.trials]
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states

    again = run_cli("-m", "sweep", "resume", str(experiment_dir), cwd=tmp_path, env=RAY_ENV)
    assert again.returncode == 0 and "is finished (6 trials): nothing to resume" in again.stdout

    grown = run_cli("-m", "sweep", "resume", str(experiment_dir), "--num-samples", "8", cwd=tmp_path, env=RAY_ENV)
    assert grown.returncode == 0, grown.stdout[-3000:] + grown.stderr[-3000:]
    assert "growing from 6 to 8 trials" in grown.stdout.splitlines()[0]
    rows_grown = read_csv(experiment_dir / "results.csv")
    assert len(rows_grown) == 8 and all(row["status"] == "completed" for row in rows_grown)
    study = load_study(experiment_dir, "resumable_test")
    assert [t.state.name for t in study.trials].count("COMPLETE") == 8  # TPE saw all 8
    assert "8 trials: 8 completed" in grown.stdout


def test_a_moved_sweep_resumes_where_it_is_and_ctrl_c_stops_a_growing_resume(tmp_path, ray_head):
    """`mv` a killed sweep's directory and resume it there; Ctrl-C during `resume --num-samples`'s first
    phase (the restore) stops the command, keeps every row and grows nothing; the next resume finishes."""
    old = tmp_path / "old" / "killed"
    rows_then, epochs_then = kill_sweep_mid_way(old, ray_head, ended_before=1)
    moved = tmp_path / "new" / "killed"
    moved.parent.mkdir()
    old.rename(moved)
    # As a driver killed while it wrote to the study leaves it: Optuna's lock, linked to the journal's old path.
    (moved / "optuna.journal.lock").symlink_to(old / "optuna.journal")
    command = [sys.executable, "-m", "sweep", "resume", str(moved), "--num-samples", "8"]
    resume = subprocess.Popen(command, cwd=tmp_path, env=RAY_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    # The restore trains a trial with 5 or more epochs to go (not one that ends as Ctrl-C comes): it is cut off.
    while all(int(line["epoch"]) > 25 for line in read_csv(moved / "epochs.csv")[len(epochs_then) :]):
        assert time.monotonic() < deadline and resume.poll() is None, (resume.kill(), resume.communicate())
        time.sleep(0.1)
    resume.send_signal(signal.SIGINT)
    stdout, stderr = resume.communicate(timeout=120)
    assert resume.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert "growing" not in stdout and "resuming (" in stdout
    rows = read_csv(moved / "results.csv")
    assert {row["trial_id"] for row in rows_then} <= {row["trial_id"] for row in rows}  # every row kept
    assert "interrupted" in {row["status"] for row in rows}
    interrupted = {row["trial_id"] for row in rows if row["status"] == "interrupted"}
    running = {t.user_attrs["tune_trial_id"] for t in load_study(moved, "resumable_test").trials
               if t.state.name == "RUNNING"}  # fmt: skip
    trained = set(epochs_by_trial(read_csv(moved / "epochs.csv")))
    # The study agrees with results.csv: a trial that runs and trained was cut off; one that Tune had asked for
    # in place of a trial its record did not know, and that had not trained yet, has no row.
    assert running & trained <= interrupted and not (running - trained) & {row["trial_id"] for row in rows}
    assert not old.exists()  # nothing was written where the sweep used to be

    finished = run_cli("-m", "sweep", "resume", str(moved), cwd=tmp_path, env=RAY_ENV)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    rows = read_csv(moved / "results.csv")
    assert len(rows) == 6 and all(row["status"] == "completed" for row in rows) and not old.exists()
    states = [t.state.name for t in load_study(moved, "resumable_test").trials]
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states


def test_run_into_an_existing_experiment_names_resume_before_ray_starts(tmp_path):
    (tmp_path / "taken").mkdir()
    sessions = set(Path("/tmp/ray").glob("session_2*"))
    run = run_cli("-m", "sweep", "run", str(ROOT / "tests/spaces/asha.yaml"), "--storage-path", str(tmp_path),
                  "--name", "taken", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 1 and set(Path("/tmp/ray").glob("session_2*")) == sessions
    assert run.stderr.strip().splitlines() == [
        f"sweep: error: {tmp_path / 'taken'} already exists: continue that sweep with "
        f"`python -m sweep resume {tmp_path / 'taken'}`, or pass another --name"
    ]


def test_resume_of_a_directory_that_is_no_sweep(tmp_path):
    run = run_cli("-m", "sweep", "resume", str(tmp_path), cwd=tmp_path, env=RAY_ENV)
    assert run.returncode == 1 and run.stderr.strip().splitlines() == [
        f"sweep: error: {tmp_path}: not a sweep's experiment directory (no sweep.yaml or Tune's tuner.pkl)"
    ]


def test_a_killed_program_sweep_resumes_and_its_programs_are_gone(tmp_path, ray_head):
    """A program has no checkpoint: an interrupted program trial runs again from the beginning. The
    programs of the killed sweep (which ignore SIGTERM and start a child) do not outlive it."""
    experiment_dir = tmp_path / "killed"
    rows_then, epochs_then = kill_sweep_mid_way(experiment_dir, ray_head, "program_resumable.yaml", ended_before=1)
    ended_then = {row["trial_id"]: row for row in rows_then if row["status"] == "completed"}
    pids = [pid for pids in experiment_dir.glob("*/pids.json") for pid in json.loads(pids.read_text())]
    deadline = time.monotonic() + 15
    while any(psutil.pid_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if psutil.pid_exists(pid)], "a program outlived its killed sweep"

    run = run_cli("-m", "sweep", "resume", str(experiment_dir), "--verbose", cwd=tmp_path, env=RAY_ENV)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "trained 20 epochs" in run.stdout  # --verbose: the programs' own output, in the resume too
    rows = {row["trial_id"]: row for row in read_csv(experiment_dir / "results.csv")}
    assert len(rows) == 4 and all(row["status"] == "completed" and row["epochs"] == "20" for row in rows.values())
    assert all(rows[k] == row for k, row in ended_then.items())
    epochs_now = epochs_by_trial(read_csv(experiment_dir / "epochs.csv")[len(epochs_then) :])
    assert all(k not in epochs_now for k in ended_then)
    assert all(epochs[0] == 1 for epochs in epochs_now.values())  # from the beginning: no checkpoint
