"""A sweep whose driver is killed (SIGKILL to its process group, as the OOM killer or a lost session would)
resumes to the end from its record alone: after a `mv`, from a `cp -r` under another name, with an edited
sweep file, and as the warm start of a new sweep. A real Ray node, real trials."""

import json
import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest

from sweep.record.events import read_events
from sweep.record.state import Status, read
from tests.helpers import RAY_ENV, ROOT, SWEEP, kill_all, load_study, read_csv, sweep_cli

pytestmark = pytest.mark.slow
SPACE = ROOT / "tests/spaces/resumable.yaml"  # 4 trials of 8 epochs, 2 at a time, a checkpoint each epoch


def kill_mid_way(experiment_dir, head, ended_before: int, space=SPACE, cwd=ROOT) -> dict:
    """Start the sweep on the shared Ray node; once `ended_before` trials have ended and another has
    reported 3 epochs, SIGKILL its driver's process group and every process it started. Returns the
    record's trials then."""
    command = [SWEEP, "run", str(space), "--checkpoint-interval", "0", "--storage-path",
               str(experiment_dir.parent), "--name", experiment_dir.name, "--address", head.address]  # fmt: skip
    sweep = subprocess.Popen(command, cwd=cwd, env=RAY_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip

    def ready() -> bool:
        trials = read(experiment_dir, live=True).trials.values()
        running = [t for t in trials if t.status == Status.RUNNING and t.steps >= 3]
        return sum(t.status == Status.COMPLETED for t in trials) >= ended_before and bool(running)

    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stderr.read()
        if (experiment_dir / "events.jsonl").exists() and ready():
            # Asked again with the driver stopped, so that the record holds still until the kill: on a loaded
            # machine Tune hands over results in bursts, which can end that trial in the meantime.
            os.kill(sweep.pid, signal.SIGSTOP)
            if ready():
                break
            os.kill(sweep.pid, signal.SIGCONT)
        time.sleep(0.05)
    tree = [psutil.Process(sweep.pid), *psutil.Process(sweep.pid).children(recursive=True)]
    os.killpg(sweep.pid, signal.SIGKILL)
    kill_all(tree)
    sweep.wait()
    wait_until_quiet(experiment_dir)
    return read(experiment_dir, live=False).trials


def wait_until_quiet(experiment_dir) -> None:
    """Until the killed driver's trial workers are gone: Ray ends them a moment after their driver (longer
    on a loaded machine), and until then one may still save a checkpoint. No file changed for 2 s."""

    def newest() -> float:
        return max((p.stat().st_mtime for p in experiment_dir.rglob("*") if p.is_file()), default=0.0)

    seen, since, deadline = newest(), time.monotonic(), time.monotonic() + 60
    while time.monotonic() - since < 2:
        assert time.monotonic() < deadline, "the killed sweep's trials still write after 60 s"
        time.sleep(0.2)
        if (now := newest()) != seen:
            seen, since = now, time.monotonic()


def assert_resumed(run, experiment_dir, before: dict, trials: int = 4, epochs: int = 8) -> None:
    """Every trial ended completed, once each; the ended ones untouched and never run again; the
    interrupted ones continued from their checkpoints with no epoch missing from the record."""
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "resuming (" in run.stdout.splitlines()[0] and "Traceback" not in run.stderr
    state = read(experiment_dir)
    rows = read_csv(experiment_dir / "results.csv")
    assert [row["trial"] for row in rows] == [str(n) for n in range(trials)]
    assert all(row["status"] == "completed" and row["epochs"] == str(epochs) for row in rows), rows
    for number, then in before.items():
        now = state.trials[number]
        if then.status == Status.COMPLETED:
            assert now.results == then.results and now.attempts == then.attempts  # never run again
        else:  # its checkpoint's epoch is sent again: the one its killed driver may not have heard of
            assert [r["step"] for r in now.results] == list(range(1, epochs + 1))  # no epoch missing
            kept = [(r["step"], r["metrics"]) for r in then.results]
            assert (
                now.attempts == then.attempts + 1
                and [(r["step"], r["metrics"]) for r in now.results][: len(kept)] == kept
            )
    study = load_study(experiment_dir, "resumable_test")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * trials  # TPE learned from every one


@pytest.fixture(scope="module")
def killed(tmp_path_factory, ray_head):
    """A sweep killed after 2 of its trials ended and while others trained; and a copy of it."""
    experiment_dir = tmp_path_factory.mktemp("killed") / "sweep"
    before = kill_mid_way(experiment_dir, ray_head, ended_before=2)
    copy = experiment_dir.parent / "copy"
    shutil.copytree(experiment_dir, copy)
    return experiment_dir, copy, before


@pytest.fixture(scope="module")
def moved(killed):
    """The killed sweep moved elsewhere (`mv`), then resumed there, its old place read-only: done once, by
    the first test to call it (the test of that resume: its time is counted there, not in a setup)."""
    experiment_dir, _, _ = killed
    done = []

    def resume():
        if not done:
            moved = experiment_dir.parent / "moved" / "sweep"
            moved.parent.mkdir()
            experiment_dir.rename(moved)
            experiment_dir.parent.chmod(0o500)  # where it was: nothing may be written there
            try:
                done.extend([moved, sweep_cli("resume", str(moved), cwd=moved.parent, env=RAY_ENV)])
            finally:
                experiment_dir.parent.chmod(0o700)
        return done

    return resume


def test_a_killed_sweep_resumes_after_a_mv_and_writes_nothing_where_it_was(killed, moved, tmp_path):
    experiment_dir, _, before = killed
    assert [t.status for t in before.values()].count(Status.COMPLETED) >= 2
    assert any(t.status == Status.INTERRUPTED and t.steps >= 3 for t in before.values())
    moved, run = moved()
    assert_resumed(run, moved, before)
    assert not experiment_dir.exists()
    again = sweep_cli("resume", str(moved), cwd=tmp_path, env=RAY_ENV)
    assert again.returncode == 0 and "is finished: nothing to resume" in again.stdout


def test_a_new_sweep_warm_started_from_it_holds_its_ended_trials_first(moved, tmp_path, ray_head):
    moved, _ = moved()
    warm = sweep_cli("run", str(SPACE), "--warm-start", str(moved), "--num-samples", "2", "--name",
                   "warm", "--storage-path", str(tmp_path), "--address", ray_head.address, cwd=tmp_path,
                   env=RAY_ENV)  # fmt: skip
    assert warm.returncode == 0, warm.stdout[-3000:] + warm.stderr[-3000:]
    state = read(tmp_path / "warm")
    assert sorted(state.warm) == list(range(4)) and sorted(state.trials) == [4, 5]  # its own: its num_samples
    assert all(t.origin == f"{moved} trial {t.number}" for t in state.warm.values())
    assert [row["trial"] for row in read_csv(tmp_path / "warm" / "results.csv")] == ["4", "5"]
    study = load_study(tmp_path / "warm", "resumable_test")
    assert [t.user_attrs.get("origin", "") != "" for t in study.trials] == [True] * 4 + [False] * 2
    assert [t.state.name for t in study.trials[:4]] == ["COMPLETE"] * 4  # what TPE starts from
    assert "4 trials come from a warm start" in (tmp_path / "warm" / "report.html").read_text()
    best = sweep_cli("best", str(tmp_path / "warm"), cwd=tmp_path)
    assert "warm start (earlier sweeps' trials, history only):" in best.stdout
    other = tmp_path / "other.yaml"
    other.write_text(SPACE.read_text().replace("name: val_acc, goal: maximize", "name: val_loss, goal: minimize"))
    refused = sweep_cli("run", str(other), "--warm-start", str(moved), cwd=tmp_path, env=RAY_ENV)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"sweep: error: --warm-start {moved}: that sweep maximizes val_acc, this one minimizes val_loss: its "
        "trials teach this one nothing")  # fmt: skip
    assert not (tmp_path / "runs").exists()
    # A space that none of its trials fits, searched at random: said, before the sweep (here: no Ray) starts.
    other.write_text(SPACE.read_text().replace("method: bayes", "method: random")
                     .replace("min: 1.0e-3, max: 1.0e-2", "min: 2.0e-2, max: 5.0e-2"))  # fmt: skip
    warned = sweep_cli("run", str(other), "--warm-start", str(moved), "--address", "127.0.0.1:1", cwd=tmp_path,
                       env=RAY_ENV)  # fmt: skip
    assert warned.returncode == 1 and warned.stderr.splitlines()[:2] == [
        f"warning: --warm-start {moved}: none of its ended trials has values this sweep's space can give: it starts "
        "from nothing",
        "warning: --warm-start: method random does not learn from earlier trials (bayes does): they are in the "
        "study, the report and the dashboard, and change no trial",
    ]  # fmt: skip
    assert not any((tmp_path / "runs").iterdir())  # the sweep that never started left nothing


def test_a_copy_resumes_under_its_new_name_with_an_edited_file(killed, tmp_path):
    """An edit moves the learning rate's range and raises the number of trials: the trials that ended are
    history, an interrupted one outside the new range ends there, and every new trial is inside it."""
    _, copy, before = killed
    edited = tmp_path / "edited.yaml"
    edited.write_text(SPACE.read_text().replace("min: 1.0e-3, max: 1.0e-2", "min: 2.0e-2, max: 5.0e-2")
                      .replace("num_samples: 4", "num_samples: 6"))  # fmt: skip
    run = sweep_cli("resume", str(copy), "--spec", str(edited), cwd=tmp_path, env=RAY_ENV)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.startswith("sweep 'resumable_test': edited (lr: log_uniform_values(min=0.001, max=0.01) -> "
                                 "log_uniform_values(min=0.02, max=0.05); num_samples: 4 -> 6)")  # fmt: skip
    state = read(copy)
    assert len(state.trials) == 6 and (copy / "source-2.yaml").read_text() == edited.read_text()
    for number, then in before.items():
        now = state.trials[number]
        if then.status == Status.COMPLETED:
            assert now.results == then.results  # never run again
        else:  # its lr lies outside the edited range
            assert (now.status, now.reason) == (Status.STOPPED, "outside the edited space")
    new = [state.trials[n] for n in range(len(before), 6)]
    assert all(0.02 <= t.params["lr"] <= 0.05 and t.status == Status.COMPLETED for t in new)
    assert len(read_csv(copy / "results.csv")) == 6
    assert not list(copy.glob("trials/*/checkpoint.ckpt"))  # the stopped ones' too: nothing continues them
    study = load_study(copy, "resumable_test")
    assert len(study.trials) == 6 and all(t.state.name in ("COMPLETE", "FAIL") for t in study.trials)
    assert [e for e in read_events(copy) if e["event"] == "edit"][0]["next_trial"] == len(before)
    assert "Edited before trial" in (copy / "report.html").read_text()


def test_resume_of_a_directory_that_is_no_sweep_and_an_edit_that_cannot_apply(tmp_path, killed):
    run = sweep_cli("resume", str(tmp_path), cwd=tmp_path, env=RAY_ENV)
    assert run.returncode == 1 and run.stderr.strip().splitlines() == [
        f"sweep: error: {tmp_path}: not a sweep's experiment directory (no record: events.jsonl)"
    ]
    _, copy, _ = killed
    other = tmp_path / "other.yaml"
    other.write_text(SPACE.read_text().replace("goal: maximize", "goal: minimize"))
    events = read_events(copy)
    run = sweep_cli("resume", str(copy), "--spec", str(other), cwd=tmp_path, env=RAY_ENV)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith(
        "sweep: error: the edited file's 'metric.goal' differs from the sweep's ('max' -> 'min')"
    )
    assert read_events(copy) == events  # refused before anything was written or started


def test_a_program_sweep_killed_before_any_trial_ended_resumes_and_its_programs_are_gone(tmp_path, ray_head):
    """A program has no checkpoint: an interrupted program trial runs again from the beginning. The
    programs of the killed sweep (which ignore SIGTERM and start a child) do not outlive it."""
    experiment_dir = tmp_path / "killed"
    before = kill_mid_way(experiment_dir, ray_head, 0, space=ROOT / "tests/spaces/program_resumable.yaml")
    assert not any(t.status == Status.COMPLETED for t in before.values())
    pids = [pid for pids in experiment_dir.glob("trials/*/pids.json") for pid in json.loads(pids.read_text())]
    deadline = time.monotonic() + 15
    while any(psutil.pid_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pids and not [pid for pid in pids if psutil.pid_exists(pid)], "a program outlived its killed sweep"
    # As KubeRay's retry of a Ray Job resumes: the same command line, with --resume.
    run = sweep_cli("run", "tests/spaces/program_resumable.yaml", "--resume", "--checkpoint-interval", "0",
                    "--storage-path", str(tmp_path), "--name", "killed", "--verbose", cwd=ROOT,
                    env=RAY_ENV)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "trained 8 epochs" in run.stdout  # --verbose: the programs' own output, in the resume too
    state = read(experiment_dir)
    assert [(t.status, len(t.results)) for t in state.trials.values()] == [(Status.COMPLETED, 8)] * 4
    for number, then in before.items():
        now = state.trials[number]
        if then.status == Status.COMPLETED:
            assert now.results == then.results  # never run again
        else:  # from the beginning: W&B's steps 0, 1, ... again, the earlier attempt's rows replaced
            assert [r["step"] for r in now.results] == list(range(8)) and now.attempts == then.attempts + 1
