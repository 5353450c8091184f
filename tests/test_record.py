"""The record of a sweep and its one reader: JSON events, a torn last line, each trial's end on disk, and the
one definition of status, value, best, target reached and work left. Early stopping's rule against Ray's
own ASHA. No Ray cluster here."""

import json
import os
import random
from types import SimpleNamespace

import pytest

from sweep.engine.rungs import Rungs
from sweep.record.events import EventLog, read_events
from sweep.record.files import EVENTS, LOCK, claim, write_atomically
from sweep.record.state import Status, read
from tests.helpers import epochs, write_record
from text_recognizer.util import UserError

SPACE = """\
method: random
metric: {name: val_acc, goal: maximize, target: 0.95}
run: {data_class: MNISTSample, max_epochs: 4}
parameters: {fc1: {values: [8, 16]}, lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}}
search: {num_samples: 4}
"""


def trial(number: int, fc1: int = 8, lr: float = 0.01) -> dict:
    return {"event": "trial", "trial": number, "params": {"fc1": fc1, "lr": lr}}


def start(number: int, attempt: int = 1) -> dict:
    return {"event": "start", "trial": number, "attempt": attempt}


def end(number: int, status: str = "completed", reason: str = "") -> dict:
    return {"event": "end", "trial": number, "status": status, "reason": reason, "summary": {}}


def test_the_record_is_json_whose_torn_last_line_is_skipped_and_cut_before_the_next_event(tmp_path):
    log = EventLog(tmp_path)
    log.write("sweep", spec={}, source="source.yaml", flags={}, cwd="/", value=float("nan"))
    log.write("result", trial=0, step=1, metrics={"loss": float("inf"), "acc": 0.5})
    log.close()
    lines = (tmp_path / EVENTS).read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["sweep", "result"]  # strict JSON: no NaN
    assert json.loads(lines[1])["metrics"] == {"loss": None, "acc": 0.5}
    with open(tmp_path / EVENTS, "a") as f:
        f.write('{"event": "end", "tri')  # a kill mid-write
    assert [e["event"] for e in read_events(tmp_path)] == ["sweep", "result"]
    EventLog(tmp_path).write("stop", interrupted=True)  # the next driver cuts the torn line off first
    assert [e["event"] for e in read_events(tmp_path)] == ["sweep", "result", "stop"]
    with open(tmp_path / EVENTS, "a") as f:
        f.write("not json\n{}\n")
    with pytest.raises(UserError, match=r"events.jsonl: line 4 is not a JSON event; the record is damaged"):
        read_events(tmp_path)
    # JSON, but not a record's: the result of a trial never asked for.
    with pytest.raises(UserError, match=r"s/events.jsonl: line 2 \('result'\) does not follow from the lines before "
                                        r"it \(AttributeError: .*\): not a record this version can read$"):  # fmt: skip
        write_record(tmp_path / "s", SPACE, epochs(3, [0.5]))


def test_each_trials_end_is_on_disk_when_the_write_returns(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    log = EventLog(tmp_path)
    for event in ("result", "start", "trial"):
        log.write(event, trial=0)
    assert synced == []  # a result lost to a power cut is sent again from the trial's checkpoint
    log.write("end", trial=0, status="completed")
    assert synced == [str(tmp_path / EVENTS)]


def test_files_are_written_whole_with_the_users_umask_and_the_directory_is_locked(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "results.csv", "a,b\n")
    finally:
        os.umask(old)
    assert (tmp_path / "results.csv").stat().st_mode & 0o777 == 0o644  # readable by another user's report
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # nothing left aside
    with pytest.raises(UserError, match="not a sweep's experiment directory"):
        claim(tmp_path, new=False)
    (tmp_path / EVENTS).write_text("")
    with claim(tmp_path, new=False):
        assert (tmp_path / LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(UserError, match="another sweep is running in it"):
            claim(tmp_path, new=False)


def test_status_value_best_and_the_target_have_one_definition(tmp_path):
    """Trial 0 reaches the target, then fails: a failed trial is neither the best nor the one that reached
    the target (the sweep goes on). An interrupted trial counts with what it reached; of two that reached
    the target, the first to reach it."""
    events = [trial(0), start(0), *epochs(0, [0.9, 0.96]), end(0, "failed", "RuntimeError: boom")]
    events += [trial(1), start(1), *epochs(1, [0.8, 0.93, 0.91])]  # the driver was killed here
    state = write_record(tmp_path / "sweep", SPACE, events)
    first, second = state.trials[0], state.trials[1]
    assert (first.status, first.reason, second.status) == (Status.FAILED, "RuntimeError: boom", Status.INTERRUPTED)
    assert first.value("val_acc", "max") == 0.96 and second.best("val_acc", "max").step == 2
    assert state.best() is second and state.target_reached() is None
    assert state.unfinished()  # trial 1 was cut off
    state.apply({**end(1), "time": 0.0})
    assert state.unfinished() and [t.number for t in state.ended()] == [0, 1]  # 2 of 4 trials
    for event, time in [(trial(2), 1), (start(2), 1), (trial(3), 1), (start(3), 1), (epochs(3, [0.96])[0], 2),
                        (epochs(2, [0.99])[0], 3)]:  # fmt: skip
        state.apply({**event, "time": time})
    assert state.best() is state.trials[2] and state.target_reached() is state.trials[3]  # trial 3 reached it first
    state.apply({**end(2), "time": 3.0})
    state.apply({**end(3), "time": 3.0})
    assert not state.unfinished()  # the target was reached: done, as W&B's sweep is


def test_a_trial_that_goes_back_to_a_checkpoint_or_starts_again_keeps_its_latest_attempt(tmp_path):
    events = [trial(0), start(0), *epochs(0, [0.5, 0.6, 0.7])]
    events += [start(0, 2), *epochs(0, [0.65, 0.75], start=2)]  # retried from epoch 1's checkpoint
    state = write_record(tmp_path / "sweep", SPACE, events)
    assert [(r["step"], r["metrics"]["val_acc"]) for r in state.trials[0].results] == [(1, 0.5), (2, 0.65), (3, 0.75)]
    assert state.trials[0].attempts == 2 and len(state.order) == 5  # early stopping saw all five, as they came


def test_a_live_sweeps_open_trials_are_running_and_a_dead_ones_interrupted(tmp_path):
    state = write_record(tmp_path / "sweep", SPACE, [trial(0), start(0), *epochs(0, [0.5])])
    assert state.trials[0].status == Status.INTERRUPTED
    with claim(tmp_path / "sweep", new=False):  # as a running driver holds it
        assert read(tmp_path / "sweep").trials[0].status == Status.RUNNING
    assert read(tmp_path / "sweep").trials[0].status == Status.INTERRUPTED


@pytest.mark.parametrize("mode, reduction_factor, horizon", [("max", 2, 9), ("min", 3, 30), ("max", 2.5, 12)])
def test_early_stopping_decides_as_rays_asha(mode, reduction_factor, horizon):
    """The same results in the same order, to Ray's ASHAScheduler and to ours: the same stops."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    rng = random.Random(0)
    ray_asha = ASHAScheduler(time_attr="step", metric="v", mode=mode, max_t=horizon, grace_period=1,
                             reduction_factor=reduction_factor)  # fmt: skip
    ours = Rungs(grace_period=1, reduction_factor=reduction_factor, horizon=horizon, mode=mode)
    trials = [SimpleNamespace(trial_id=str(i)) for i in range(12)]  # what ASHA reads of Tune's Trial
    for t in trials:
        ray_asha.on_trial_add(None, t)
    step = dict.fromkeys(range(12), 0)
    stopped, decisions = set(), 0
    while len(stopped) < 12:
        i = rng.choice([i for i in range(12) if i not in stopped])
        step[i] += 1
        value = rng.random() + step[i] * 0.05 * (1 if mode == "max" else -1)
        theirs = ray_asha.on_trial_result(None, trials[i], {"step": step[i], "v": value}) == TrialScheduler.STOP
        mine = bool(ours.decide(i, step[i], value))
        assert mine == theirs, (i, step[i], value)
        decisions += mine
        if mine or step[i] == horizon - 1:
            stopped.add(i)
    assert decisions >= 3  # the comparison saw stops, not only goes
