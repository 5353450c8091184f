"""A program run as W&B's agent runs it (sweep/trials/program_run.py, guard.py, wandb_hook/): what is read of
it checked against W&B itself, which is the oracle here. Real programs log with the real `wandb` package
offline; `wandb leet inspect` (wandb's own reader of a run's .wandb file) says what W&B recorded, and the rows
and summary read by the sweep must be the same. Its process group is ended whatever the program does. No Ray."""

import ast
import importlib.metadata
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sweep.spec.command import DEFAULT_COMMAND, Program
from sweep.trials import program_run
from sweep.trials.program_run import stdout_values
from sweep.trials.wandb_history import History
from tests.helpers import numbers, wandb_history, wandb_summary

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "tests" / "programs"
HOOK = ROOT / "sweep" / "trials" / "wandb_hook" / "sitecustomize.py"
RUN_ID = "agentrun"


def start(tmp_path: Path, program: str, args: dict, command=DEFAULT_COMMAND) -> program_run.ProgramRun:
    """The program started as a trial starts it, in tmp_path (W&B's files under tmp_path/wandb)."""
    return program_run.start(Program(path=str(PROGRAMS / program), command=command, cwd=str(tmp_path)), args,
                             tmp_path, RUN_ID, "test")  # fmt: skip


def run_to_end(tmp_path: Path, program: str, args: dict, **kwargs) -> tuple[program_run.ProgramRun, list[dict]]:
    run = start(tmp_path, program, args, **kwargs)
    rows = list(run.rows())
    run.end()
    return run, rows


def approx_rows(rows: list[dict], rel: float = 1e-12) -> list:
    """Rows compared key by key, their values as floats (W&B's JSON writes 1.0 as 1)."""
    return [pytest.approx(row, rel=rel) for row in rows]


def test_wandb_history_rows_are_committed_as_wandb_commits_them():
    history = History()
    assert history.log({"loss": 1.0}, None, None) == [{"loss": 1.0, "_step": 0}]  # no step: each call is a row
    assert history.log({"acc": 0.5}, None, False) == []  # commit=False: held for the next
    assert history.log({"loss": 0.9}, None, None) == [{"acc": 0.5, "loss": 0.9, "_step": 1}]
    assert history.log({"acc": 0.6}, 5, None) == []  # a step: held until a later one
    assert history.log({"loss": 0.8}, 5, None) == []
    assert history.log({"acc": 0.7}, 6, None) == [{"acc": 0.6, "loss": 0.8, "_step": 5}]
    assert history.log({"loss": 0.7}, 6, True) == [{"acc": 0.7, "loss": 0.7, "_step": 6}]
    assert history.log({"acc": 0.1}, 3, True) == []  # below the current step (7): dropped
    assert history.log({"acc": 0.8}, None, False) == []
    assert history.log({"loss": 0.6}, 9, None) == [{"acc": 0.8, "_step": 7}]  # the held row at its own step
    assert history.end() == [{"loss": 0.6, "_step": 9}]
    assert history.summary() == {"loss": 0.6, "acc": 0.8, "_step": 9}


# The metric columns' rows each scenario must give (W&B's, checked below against W&B's own files).
EXPECTED_ROWS = {
    "plain": [{"loss": 1.0, "epoch": 0, "_step": 0}, {"loss": 0.5, "epoch": 1, "_step": 1},
              {"loss": 1 / 3, "epoch": 2, "_step": 2}],
    "commit_false_then_step": [{"loss": 1.0, "_step": 0}, {"acc": 0.5, "_step": 1}, {"loss": 0.8, "_step": 3},
                               {"acc": 0.7, "_step": 5}, {"loss": 0.6, "_step": 6}, {"loss": 0.5, "_step": 9}],
    # 1.0 held at step 5; 0.5 and 0.4 dropped; 0.3 (no step) replaces 1.0 in the held row and commits it
    "step_below_current": [{"loss": 0.3, "_step": 5}, {"loss": 0.2, "_step": 7}],
    "nested": [{"val.loss": 0.5, "val.acc.top1": 0.9, "train/loss": 0.7, "scaled": 0.25, "_step": 0},
               {"val.loss": 0.4, "_step": 1}, {"_step": 2}, {"val.loss": 0.3, "_step": 3}],
    "summary_only": [],
    "summary_after_training": [{"val/loss": 0.9, "epoch": 0, "_step": 0}, {"val/loss": 0.4, "epoch": 1, "_step": 1},
                               {"val/loss": 0.6, "epoch": 2, "_step": 2}, {"lr": 0.01, "_step": 3}],
    "define_metric_summaries": [{"val/loss": 0.5, "epoch": 0, "quiet": 1.0, "_step": 0},
                                {"val/loss": 0.3, "acc_top1": 0.2, "_step": 1},
                                {"val/loss": 0.4, "acc_top1": 0.1, "epoch": 1, "_step": 2},
                                {"train_loss": 1.5, "epoch": 1, "_step": 3}],
}  # fmt: skip
EXPECTED_SUMMARY = {
    # run.summary["config"]["depth"] = 4 makes the mapping {"lr": 0.1} a mapping of its own paths: lr is gone
    "summary_only": {"val/loss": 0.25, "best/acc": 0.9, "epochs": 3, "config.depth": 4},
    "summary_after_training": {"val/loss": 0.4, "lr": 0.01, "_step": 3},  # epoch: removed
    # min of val/loss; max and last of the acc* glob, until run.summary set acc_top1; no summary for quiet
    "define_metric_summaries": {"val/loss": {"min": 0.3}, "acc_top1": 0.15, "epoch": 1, "train_loss": 1.5, "_step": 3},
}  # fmt: skip


@pytest.mark.slow  # real programs, real W&B runs
@pytest.mark.slow  # real programs, real W&B runs
@pytest.mark.slow  # real programs, real W&B runs
@pytest.mark.parametrize("scenario", list(EXPECTED_ROWS))
def test_rows_and_summary_are_what_wandb_records(tmp_path, scenario):
    run, rows = run_to_end(tmp_path, "hook_wandb_logs.py", {"scenario": scenario})
    assert run.code == 0 and run.uses_wandb, (tmp_path / "output.log").read_text()
    assert rows == approx_rows(EXPECTED_ROWS[scenario])
    assert rows == approx_rows(wandb_history(tmp_path))  # W&B's own record of the run
    summary = run.summary()
    assert numbers(summary) == pytest.approx(wandb_summary(tmp_path), rel=1e-12)
    for key, value in EXPECTED_SUMMARY.get(scenario, {}).items():
        assert summary[key] == pytest.approx(value), key
    if scenario == "step_below_current":
        assert "Tried to log to step 2 that is less than the current step 5" in (tmp_path / "output.log").read_text()


@pytest.mark.slow  # real programs, real W&B runs
def test_a_metric_only_in_the_summary_counts_and_a_missing_one_fails(tmp_path):
    run, rows = run_to_end(tmp_path, "hook_wandb_logs.py", {"scenario": "summary_only"})
    assert rows == [] and run.summary()["val/loss"] == 0.25
    assert run.failure("val/loss", reported=0) == ""
    assert run.failure("val/acc", reported=0) == (
        "the program ended without logging val/acc: log it with wandb.log({'val/acc': ...}) or "
        "run.summary['val/acc'] = ..."
    )


@pytest.mark.slow  # real programs, real W&B runs
def test_only_the_agents_run_counts(tmp_path):
    """A second wandb.init while the run goes on returns that run (W&B records both logs in its file); a run
    with another id (reinit='create_new', or a child process with its own WANDB_RUN_ID) is another W&B run."""
    run, rows = run_to_end(tmp_path, "hook_wandb_logs.py", {"scenario": "runs"})
    assert run.code == 0, (tmp_path / "output.log").read_text()
    assert rows == [{"loss": 1.0, "_step": 0}, {"loss": 0.9, "_step": 1}, {"loss": 0.8, "_step": 2}]
    assert rows == wandb_history(tmp_path) and numbers(run.summary()) == wandb_summary(tmp_path)
    assert run.summary()["loss"] == 0.8 and run.other_runs == {"other", "child"}
    assert [row["loss"] for row in wandb_history(tmp_path, "other")] == [5.0]  # W&B kept them apart
    assert [row["loss"] for row in wandb_history(tmp_path, "child")] == [7.0]


@pytest.mark.slow  # real programs, real W&B runs
def test_a_program_whose_run_is_not_the_agents_fails_saying_so(tmp_path):
    run, rows = run_to_end(tmp_path, "hook_wandb_logs.py", {"scenario": "another_id_only"})
    assert rows == [] and run.other_runs == {"mine"} and wandb_history(tmp_path, "mine")[0]["loss"] == 1
    assert run.failure("loss", reported=0).startswith(
        "the program logged to W&B run mine, not to the agent's run agentrun (WANDB_RUN_ID), which alone counts"
    )


@pytest.mark.slow  # real programs, real W&B runs
@pytest.mark.parametrize("writer", ["tensorboardX", "torch"])
def test_tensorboard_scalars_are_rows_as_wandb_syncs_them(tmp_path, writer):
    run, rows = run_to_end(tmp_path, "hook_tensorboard.py", {"writer": writer, "dirs": "default"})
    assert run.code == 0, (tmp_path / "output.log").read_text()
    assert rows == approx_rows([
        {"loss": 1.0, "acc": 0.0, "global_step": 0, "_step": 0},
        {"loss": 0.5, "acc": 0.1, "global_step": 1, "_step": 1},
        {"loss": 1 / 3, "acc": 0.2, "global_step": 2, "_step": 2},
        {"late": 5.0, "global_step": 10, "_step": 3},
    ], rel=1e-6)  # fmt: skip
    assert rows[2]["loss"] == pytest.approx(0.33333334, rel=1e-8)  # a 32-bit float, as W&B reads it
    assert rows == approx_rows(wandb_history(tmp_path), rel=1e-7)
    assert numbers(run.summary()) == pytest.approx(wandb_summary(tmp_path), rel=1e-7)


@pytest.mark.slow  # real programs, real W&B runs
def test_tensorboard_writers_in_two_directories_get_their_prefixes(tmp_path):
    """W&B reads each directory's events on its own, so its rows of the two come in either order (and a
    wandb.log row among them): compared without their `_step`."""
    run, rows = run_to_end(tmp_path, "hook_tensorboard.py", {"writer": "torch", "dirs": "train_val"})
    assert run.code == 0, (tmp_path / "output.log").read_text()

    def unordered(rows):
        return sorted(json.dumps({k: float(v) for k, v in row.items() if k != "_step"}, sort_keys=True) for row in rows)

    assert [row["_step"] for row in rows] == [0, 1, 2, 3, 4]
    assert unordered(rows) == unordered([
        {"train/loss": 1.0, "global_step": 0}, {"train/loss": 0.5, "global_step": 1},
        {"val/loss": 2.0, "global_step": 0}, {"val/loss": 1.0, "global_step": 1}, {"direct": 1.0},
    ])  # fmt: skip
    assert unordered(rows) == unordered(wandb_history(tmp_path))


# The hook is imported by the program's own Python, which may be older than the sweep's.
OLDEST_PYTHON = tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.metadata("wandb")["Requires-Python"]))


def test_the_hook_parses_under_the_oldest_python_wandb_supports():
    assert OLDEST_PYTHON[:2] == (3, 10)  # wandb 0.31's Requires-Python: >=3.10
    ast.parse(HOOK.read_text(), feature_version=OLDEST_PYTHON[:2])


def pythons() -> list[str]:
    """The Pythons found here besides this one (pyenv's, Debian's), and those named in SWEEP_TEST_PYTHONS."""
    found = [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.*/bin/python3"))]
    found += [str(p) for p in sorted(Path("/usr/bin").glob("python3.[0-9]*")) if re.fullmatch(r"python3\.\d+", p.name)]
    found += list(filter(None, os.environ.get("SWEEP_TEST_PYTHONS", "").split(os.pathsep)))
    return found or ["none found"]


@pytest.mark.parametrize("python", pythons())
def test_the_hook_imports_under_each_python_here_and_runs_the_users_sitecustomize(tmp_path, python):
    if not Path(python).exists():
        pytest.skip("no other Python here")
    user = tmp_path / "user"
    user.mkdir()
    (user / "sitecustomize.py").write_text("print('the user sitecustomize ran')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HOOK.parent), str(user)]),
           "SWEEP_WANDB_LOG": str(tmp_path / "log.jsonl")}  # fmt: skip
    checked = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.stderr == "" and checked.stdout.splitlines()[0] == "the user sitecustomize ran", checked
    has_wandb = subprocess.run([python, "-c", "import wandb"], capture_output=True, timeout=120).returncode == 0
    if has_wandb:  # and it reads a real W&B run under that Python
        run, rows = run_to_end(tmp_path, "hook_wandb_logs.py", {"scenario": "commit_false_then_step"},
                               command=(python, "${program}", "${args}"))  # fmt: skip
        assert rows == approx_rows(EXPECTED_ROWS["commit_false_then_step"]) and run.failure("loss", len(rows)) == ""


@pytest.mark.parametrize(
    "line, values",
    [
        ("epoch=3 val_loss=0.231", {"epoch": 3.0, "val_loss": 0.231}),
        ("Epoch 3: val/acc = 0.91, loss=1e-3 (lr=3.0E-04)", {"val/acc": 0.91, "loss": 1e-3, "lr": 3e-4}),
        ("loss=nan best=inf", {"loss": float("nan"), "best": float("inf")}),
        ("path=/data/x=1 name=run3 note=val_loss=x", {}),
        ("no pairs here", {}),
    ],
)
def test_name_value_lines_are_read_as_katibs_stdout_collector_reads_them(line, values):
    assert json.dumps(stdout_values(line)) == json.dumps(values)


@pytest.mark.slow  # real programs, real W&B runs
def test_a_program_trial_ends_when_its_program_does(tmp_path, monkeypatch):
    """The guard holds none of the program's output: the rows end at the program's exit, all of its output
    read, with no wait for OUTPUT_WAIT_S (set long here); only a child that keeps the program's stdout
    open is waited for, OUTPUT_WAIT_S and no longer."""
    monkeypatch.setattr(program_run, "OUTPUT_WAIT_S", 30.0)
    lines = "import sys\nfor i in range(2000): print(f'step={i} loss={1 / (i + 1)}')\nprint('done', file=sys.stderr)"
    (tmp_path / "many_lines.py").write_text(lines)
    prog = Program(path="many_lines.py", command=DEFAULT_COMMAND, cwd=str(tmp_path))
    started = time.monotonic()
    run = program_run.start(prog, {}, tmp_path / "run", RUN_ID, "test")
    rows = list(run.rows())
    took = time.monotonic() - started
    run.end()
    assert took < 10, f"rows() took {took:.1f} s"
    assert [row["step"] for row in rows] == list(range(2000)) and rows[-1]["loss"] == pytest.approx(1 / 2000)
    output = (tmp_path / "run" / "output.log").read_text().splitlines()
    # The command line, then stdout's lines and stderr's as their readers took them.
    assert len(output) == 2002 and "done" in output and output.index("step=1999 loss=0.0005") > 1000

    monkeypatch.setattr(program_run, "OUTPUT_WAIT_S", 1.0)
    (tmp_path / "leaves_a_child.sh").write_text("sleep 600 &\necho loss=1\n")
    prog = Program(path="leaves_a_child.sh", command=("bash", "${program}"), cwd=str(tmp_path))
    started = time.monotonic()
    run = program_run.start(prog, {}, tmp_path / "child", RUN_ID, "test")
    assert list(run.rows()) == [{"loss": 1.0}]
    took = time.monotonic() - started
    run.end()
    assert 1.0 <= took < 10, f"rows() took {took:.1f} s"
    assert run.failure("loss", 1) == ""


def alive(pids) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def stubborn(tmp_path, epochs: int):
    """The W&B stand-in that ignores SIGTERM and starts a child, started as a trial would start it."""
    args = {"epoch_seconds": 0.2, "epochs": epochs, "layers": [64], "model.width_scale": 1,
            "optimizer": {"lr": 0.01, "name": "adam"}, "stubborn": True}  # fmt: skip
    return program_run.start(Program(path="tests/programs/wandb_train.py", command=DEFAULT_COMMAND, cwd=str(ROOT)),
                             args, tmp_path, "run1", "test")  # fmt: skip


@pytest.mark.slow  # real programs, real W&B runs
def test_a_stopped_program_and_its_children_are_gone_though_it_ignores_sigterm(tmp_path):
    run = stubborn(tmp_path, epochs=100)
    rows = run.rows()
    assert [next(rows)["val/loss"] for _ in range(2)] == pytest.approx([1.0 + 1 / 64, 0.5 + 1 / 64])
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert len(alive(pids)) == 2 and run.uses_wandb
    started = time.monotonic()
    run.stop()
    assert time.monotonic() - started < 0.5  # Tune gives a stopped trial 2 s to return
    deadline = time.monotonic() + 10
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pids), "a process outlived its stopped trial"
    output = (tmp_path / "output.log").read_text()
    assert output.startswith("$ /usr/bin/env ") and "tests/programs/wandb_train.py --epoch_seconds=0.2" in output


@pytest.mark.slow  # real programs, real W&B runs
def test_a_child_that_outlives_its_program_is_ended_with_the_run(tmp_path):
    run = stubborn(tmp_path, epochs=2)
    values = [row["val/loss"] for row in run.rows()]
    assert len(values) == 2 and run.failure("val/loss", len(values)) == ""
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert alive(pids) == pids[1:]  # the program has exited; its child has not
    run.end()
    assert not alive(pids)
    assert list(tmp_path.glob("wandb/offline-run-*/run-run1.wandb"))  # W&B ran offline, in the run's directory
    assert "wandb_version: 1" in (tmp_path / "wandb/sweep-test/config-run1.yaml").read_text()
    assert not math.isnan(run.summary()["val/loss"])


@pytest.mark.slow  # real programs, real W&B runs
def test_a_program_whose_worker_dies_is_ended_by_its_guard(tmp_path):
    """Ray kills a trial worker (Ctrl-C, the sweep's end, a lost node): the program goes with it."""
    script = (
        "import sys, time; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
        "from tests.test_program_run import stubborn\n"
        "run = stubborn(Path(sys.argv[2]), epochs=100); next(run.rows()); print('running', flush=True)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(ROOT), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout.readline() == "running\n"
    pids = json.loads((tmp_path / "pids.json").read_text())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 10
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pids)


@pytest.mark.slow  # real programs, real W&B runs
def test_the_overhead_benchmark_compares_this_tree_with_a_baseline(tmp_path):
    bench = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "program_overhead.py"), "--smoke-test"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    for program in ("print_loss", "wandb_loss"):
        assert re.search(rf"{program} this tree +whole \d+\.\d+ s  tail +\d+\.\d ms", bench.stdout), bench.stdout
        assert re.search(rf"{program} baseline / this tree: whole \d+\.\d+x", bench.stdout), bench.stdout
