"""Real sweeps of programs through the CLI, as a user runs them from their project's directory (here the
repository's root, where the stand-in programs are): W&B programs of several shapes, a bash script, and
programs that fail. They join one Ray node (`ray_head`), so that each pays no Ray start."""

import csv
import json
from pathlib import Path

import psutil
import pytest

from tests.conftest import RAY_ENV, ROOT, load_study, run_cli

pytestmark = pytest.mark.slow


def program_sweep(space: str, tmp_path: Path, ray_head, *flags: str):
    """`python -m sweep run tests/spaces/SPACE` from the repository's root, on the shared Ray node."""
    run = run_cli("-m", "sweep", "run", f"tests/spaces/{space}", "--address", ray_head.address, "--storage-path",
                  str(tmp_path), "--name", "sweep", *flags, cwd=ROOT, env=RAY_ENV)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(tmp_path / "sweep" / "results.csv") as f:
        rows = {row["trial_id"]: row for row in csv.DictReader(f)}
    return run, rows


def trial_dir(tmp_path: Path, trial_id: str) -> Path:
    (folder,) = (tmp_path / "sweep").glob(f"run_program_trial_{trial_id}_*")
    return folder


def test_a_wandb_program_is_swept_stopped_and_run_once_more(tmp_path, ray_head):
    """W&B's default command: values from wandb.config only, nested and list values, ASHA stopping runs
    (of a program that ignores SIGTERM and starts a child), W&B offline in each trial's directory, and the
    final run with the best values."""
    run, rows = program_sweep("program_wandb.yaml", tmp_path, ray_head, "--final")
    assert len(rows) == 6 and {row["status"] for row in rows.values()} == {"completed", "stopped early"}
    for trial_id, row in rows.items():
        folder = trial_dir(tmp_path, trial_id)
        seen = json.loads((folder / "seen.json").read_text())
        assert seen["config"]["optimizer"] == {"lr": float(row["optimizer.lr"]), "name": "adam"}
        assert seen["config"]["layers"] == json.loads(row["layers"]) and seen["config"]["epochs"] == 8
        assert seen["cuda_visible_devices"] == ""  # no GPU for a CPU trial
        assert not [pid for pid in json.loads((folder / "pids.json").read_text()) if psutil.pid_exists(pid)]
        assert list(folder.glob("wandb/offline-run-*/run-*.wandb"))
        epochs = int(row["epochs"])
        assert epochs == 8 if row["status"] == "completed" else epochs in (2, 4)  # hyperband: 2, 4, ...
    best = min(rows.values(), key=lambda row: float(row["val/loss"]))
    assert f"best trial {best['trial_id']}" in run.stdout
    assert f"W&B runs:    offline; upload with `wandb sync {tmp_path / 'sweep'}/*/wandb/offline-run-*`" in run.stdout
    assert "final run: val/loss=" in run.stdout and (tmp_path / "sweep/final/output.log").exists()
    study = load_study(tmp_path / "sweep", "program_wandb")
    stopped = [row for row in rows.values() if row["status"] == "stopped early"]
    assert [t.state.name for t in study.trials].count("PRUNED") == len(stopped)


def test_argparse_and_hydra_programs_get_their_values_on_the_command_line(tmp_path, ray_head):
    _, rows = program_sweep("program_args.yaml", tmp_path / "args", ray_head)
    assert len(rows) == 4 and all(row["status"] == "completed" for row in rows.values())
    for trial_id, row in rows.items():
        seen = json.loads((trial_dir(tmp_path / "args", trial_id) / "seen.json").read_text())
        assert seen == {"lr": float(row["lr"]), "batch_size": 32, "augment": row["augment"] == "True",
                        "layers": [64, 64], "epochs": 3}  # fmt: skip
        # wandb.log(..., step=epoch) twice per epoch: one row per step, three in all
        assert row["epochs"] == "3" and float(row["accuracy"]) == pytest.approx(0.75 if seen["augment"] else 0.7)
    _, rows = program_sweep("program_hydra.yaml", tmp_path / "hydra", ray_head)
    assert len(rows) == 2
    for trial_id, row in rows.items():
        argv = json.loads((trial_dir(tmp_path / "hydra", trial_id) / "seen.json").read_text())
        assert argv == ["+experiment=small", f"data.batch_size={row['data.batch_size']}", f"model.lr={row['model.lr']}"]
        assert float(row["val.acc"]) == pytest.approx(min(0.99, 0.5 + 2 * float(row["model.lr"]) * 10), abs=1e-3)


def test_a_program_without_wandb_reports_its_name_value_lines(tmp_path, ray_head):
    run, rows = program_sweep("program_stdout.yaml", tmp_path, ray_head, "--verbose")
    values = {float(row["lr"]): float(row["val_loss"]) for row in rows.values()}
    assert values == pytest.approx({lr: 1 / (5 * lr * 100) for lr in (0.01, 0.02, 0.05, 0.1)}, abs=1e-4)
    assert all(row["epochs"] == "5" and row["status"] == "completed" for row in rows.values())
    # --verbose: the programs' output too (Ray forwards it a little later: the last trial's may come too late)
    assert "starting with lr=" in run.stdout and "epoch=1 val_loss=" in run.stdout


def test_programs_that_fail_say_why_in_one_line_and_the_sweep_goes_on(tmp_path, ray_head):
    run = run_cli("-m", "sweep", "run", "tests/spaces/program_misbehaving.yaml", "--address", ray_head.address,
                  "--storage-path", str(tmp_path), "--name", "sweep", cwd=ROOT, env=RAY_ENV)  # fmt: skip
    with open(tmp_path / "sweep" / "results.csv") as f:
        rows = {row["mode"]: row for row in csv.DictReader(f)}
    assert rows["fine"]["status"] == "completed" and run.returncode == 0
    crash, silent = rows["crash"], rows["silent"]
    assert crash["status"] == silent["status"] == "error"
    log = trial_dir(tmp_path, crash["trial_id"]) / "output.log"
    assert crash["error"] == (
        f"exit code 1: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (a stand-in) (output: {log})"
    )
    assert "Traceback (most recent call last)" in log.read_text() and "epoch 1 done (crash)" in log.read_text()
    assert silent["error"].startswith("the program ended without logging val/loss: log it with wandb.log(")
    assert "2 failed" in run.stdout and "Traceback" not in run.stdout + run.stderr


def test_the_fsdl_labs_wandb_command_sweeps_our_trainer_in_process(tmp_path, ray_head):
    _, rows = program_sweep("fsdl_lab.yaml", tmp_path, ray_head)
    assert len(rows) == 3 and all(row["status"] in ("completed", "stopped early") for row in rows.values())
    for trial_id in rows:
        (folder,) = (tmp_path / "sweep").glob(f"run_trial_{trial_id}_*")  # our trainer's trials
        assert not (folder / "output.log").exists()  # no program was started
        assert list(folder.glob("wandb/offline-run-*/run-*.wandb"))  # --wandb: W&B offline, in the trial's dir
