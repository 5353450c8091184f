"""Real sweeps of programs through the CLI, as a user runs them from their project's directory (here the
repository's root, where the stand-in programs are): W&B programs of several shapes, checked against what
W&B itself recorded of each run (`wandb leet inspect`), a bash script, and programs that fail. They join
one Ray node (`ray_head`), so that each pays no Ray start."""

import json
from pathlib import Path

import psutil
import pytest

from sweep.record.state import read
from tests.helpers import RAY_ENV, ROOT, load_study, read_csv, sweep_cli, wandb_history, wandb_summary

pytestmark = pytest.mark.slow


def program_sweep(space: str, tmp_path: Path, ray_head, *flags: str):
    """`sweep run tests/spaces/SPACE` from the repository's root, on the shared Ray node."""
    run = sweep_cli("run", f"tests/spaces/{space}", "--address", ray_head.address, "--storage-path",
                    str(tmp_path), "--name", "sweep", *flags, cwd=ROOT, env=RAY_ENV)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, {row["trial"]: row for row in read_csv(tmp_path / "sweep" / "results.csv")}


def trial_dir(tmp_path: Path, trial: str) -> Path:
    return tmp_path / "sweep" / "trials" / f"{int(trial):04d}"


def run_id(folder: Path) -> str:
    """The W&B run id of the (one) run in a trial's directory."""
    (run_file,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    return run_file.stem.removeprefix("run-")


def test_a_wandb_program_is_swept_stopped_and_run_once_more(tmp_path, ray_head):
    """W&B's default command: values from wandb.config only, nested and list values, hyperband stopping runs
    (of a program that ignores SIGTERM and starts a child), W&B offline in each trial's directory, and the
    final run with the best values."""
    run, rows = program_sweep("program_wandb.yaml", tmp_path, ray_head, "--final")
    assert len(rows) == 4 and {row["status"] for row in rows.values()} == {"completed", "stopped early"}
    state = read(tmp_path / "sweep")
    for trial, row in rows.items():
        folder = trial_dir(tmp_path, trial)
        seen = json.loads((folder / "seen.json").read_text())
        assert seen["config"]["optimizer"] == {"lr": float(row["optimizer.lr"]), "name": "adam"}
        assert seen["config"]["layers"] == json.loads(row["layers"]) and seen["config"]["epochs"] == 6
        assert seen["cuda_visible_devices"] == ""  # no GPU for a trial that asked for none (the node has 2)
        assert not [pid for pid in json.loads((folder / "pids.json").read_text()) if psutil.pid_exists(pid)]
        history = {r.pop("_step"): r for r in wandb_history(folder, run_id(folder))}
        recorded = state.trials[int(trial)].results
        assert all(history[r["step"]] == r["metrics"] for r in recorded)  # as W&B recorded them, every digit
        assert float(row["val/loss"]) == min(r["metrics"]["val/loss"] for r in recorded)
        # hyperband at 2, 4, ... values: a stopped trial's last recorded one (its program may log a few more
        # before it is ended: W&B has them, the sweep had stopped listening)
        assert len(recorded) == 6 if row["status"] == "completed" else len(recorded) in (2, 4)
    best = min(rows.values(), key=lambda row: float(row["val/loss"]))
    assert f"best trial {best['trial']}" in run.stdout
    assert f"upload with `wandb sync {tmp_path / 'sweep'}/trials/*/wandb/offline-run-*`" in run.stdout
    assert "final run: val/loss=" in run.stdout and (tmp_path / "sweep/final/output.log").exists()
    study = load_study(tmp_path / "sweep", "program_wandb")
    stopped = [row for row in rows.values() if row["status"] == "stopped early"]
    assert [t.state.name for t in study.trials].count("PRUNED") == len(stopped)


def test_a_programs_value_is_the_best_of_its_logged_values_and_its_summary_as_wandb_recorded_them(tmp_path, ray_head):
    run, rows = program_sweep("wandb_values.yaml", tmp_path, ray_head)
    rows = {row["scenario"]: row for row in rows.values()}
    crash, silent = rows.pop("crash"), rows.pop("silent")  # programs that fail: the sweep goes on
    assert crash["status"] == silent["status"] == "failed" and "2 failed" in run.stdout
    assert crash["reason"] == "exit code 1: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (a stand-in)"
    log = (trial_dir(tmp_path, crash["trial"]) / "output.log").read_text()
    assert "Traceback (most recent call last)" in log and "epoch 1 done (crash)" in log
    assert silent["reason"].startswith("the program ended without logging val/loss: log it with wandb.log(")
    assert "Traceback" not in run.stdout + run.stderr
    assert {name: float(row["val/loss"]) for name, row in rows.items()} == {
        "summary_only": 0.25,  # set only in the summary: no "ended without logging"
        "summary_after_training": 0.4,  # the summary's best epoch, below the last logged 0.6
        "define_metric_summaries": 0.3,  # its logged minimum; the summary's {"min": 0.3} is skipped
    }
    for row in rows.values():
        folder = trial_dir(tmp_path, row["trial"])
        history, summary = wandb_history(folder, run_id(folder)), wandb_summary(folder, run_id(folder))
        logged = [r["val/loss"] for r in history if "val/loss" in r]
        in_summary = [summary["val/loss"]] if "val/loss" in summary else []  # {"min": x} is flattened away
        assert float(row["val/loss"]) == min(logged + in_summary)  # W&B's metric_extremum
        for column in set(row) & set(summary) - {"val/loss"}:  # the other columns: W&B's summary
            assert float(row[column]) == summary[column], column
    assert "best trial" in run.stdout and rows["summary_only"]["trial"] in run.stdout.split("best trial ")[1]
    best = read(tmp_path / "sweep").best()
    assert best.params["scenario"] == "summary_only" and best.best("val/loss", "min").step is None  # its summary


def test_a_grid_without_a_metric_runs_every_trial_and_lists_what_each_logged(tmp_path, ray_head):
    run, rows = program_sweep("wandb_no_metric.yaml", tmp_path, ray_head)
    assert [row["status"] for row in rows.values()] == ["completed"] * 3
    assert "a sweep without a metric has no best" in run.stdout and "no metric, early stopping off" in run.stdout
    for row in rows.values():
        folder = trial_dir(tmp_path, row["trial"])
        summary = wandb_summary(folder, run_id(folder))
        listed = {column: float(value) for column, value in row.items() if column in summary and value != ""}
        assert listed and listed == {column: summary[column] for column in listed}
        steps = [r["_step"] for r in wandb_history(folder, run_id(folder))]
        assert steps == [r["step"] for r in read(tmp_path / "sweep").trials[int(row["trial"])].results]
    assert not (tmp_path / "sweep" / "best_config.yaml").exists()
    best = sweep_cli("best", str(tmp_path / "sweep"), cwd=tmp_path)
    assert best.returncode == 0 and best.stdout.endswith("no best: a sweep without a metric chooses none\n")


def test_argparse_and_hydra_programs_get_their_values_on_the_command_line(tmp_path, ray_head):
    _, rows = program_sweep("program_args.yaml", tmp_path / "args", ray_head)
    assert len(rows) == 4 and all(row["status"] == "completed" for row in rows.values())
    for trial, row in rows.items():
        seen = json.loads((trial_dir(tmp_path / "args", trial) / "seen.json").read_text())
        assert seen == {"lr": float(row["lr"]), "batch_size": 32, "augment": row["augment"] == "True",
                        "layers": [64, 64], "epochs": 3}  # fmt: skip
        assert row["steps"] == "2" and float(row["accuracy"]) == pytest.approx(0.75 if seen["augment"] else 0.7)
    _, rows = program_sweep("program_hydra.yaml", tmp_path / "hydra", ray_head)
    assert len(rows) == 2
    for trial, row in rows.items():
        argv = json.loads((trial_dir(tmp_path / "hydra", trial) / "seen.json").read_text())
        assert argv == ["+experiment=small", f"data.batch_size={row['data.batch_size']}", f"model.lr={row['model.lr']}"]
        assert float(row["val.acc"]) == pytest.approx(min(0.99, 0.5 + 2 * float(row["model.lr"]) * 10), abs=1e-3)


def test_the_fsdl_labs_wandb_command_sweeps_our_trainer_in_process(tmp_path, ray_head):
    _, rows = program_sweep("fsdl_lab.yaml", tmp_path, ray_head)
    assert len(rows) == 2 and all(row["status"] in ("completed", "stopped early") for row in rows.values())
    for trial in rows:
        folder = trial_dir(tmp_path, trial)
        assert not (folder / "output.log").exists()  # no program was started: our trainer ran in-process
        assert list(folder.glob("wandb/offline-run-*/run-*.wandb"))  # --wandb: W&B offline, in the trial's dir
    assert read(tmp_path / "sweep").spec["kind"] == "trainer"
