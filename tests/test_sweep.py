"""Real sweeps: a local Ray, Optuna and Lightning trials on the MNIST sample, run through the real CLI."""

import csv
import time
from datetime import datetime
from pathlib import Path

import optuna
import pytest

from tests.conftest import RAY_ENV, ROOT, load_study, parse_metrics, run_cli, sweep_run
from text_recognizer.util import load_yaml_mapping
from training.run_experiment import parse_config

pytestmark = pytest.mark.slow


def ray_processes() -> set[int]:
    """Live processes of any local Ray: its servers, agents, dashboard and workers."""
    import psutil

    found = set()
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        command = " ".join(process.info["cmdline"] or [])
        if process.info["status"] != psutil.STATUS_ZOMBIE and (
            process.info["name"] in ("raylet", "gcs_server") or command.startswith("ray::") or "/ray/" in command
        ):
            found.add(process.pid)
    return found


def assert_no_ray_left(before: set[int]) -> None:
    """The command shut down the Ray it started: none of its processes outlives it (they get 10 s to exit)."""
    for _ in range(20):
        left = ray_processes() - before
        if not left:
            return
        time.sleep(0.5)
    raise AssertionError(f"Ray processes left behind: {sorted(left)}")


def interval(row: dict) -> tuple[float, float]:
    start = datetime.fromisoformat(row["start"]).timestamp()
    return start, start + float(row["duration_s"])


def test_sweep_runs_every_trial_with_two_at_a_time(asha_sweep):
    run, experiment_dir, rows = asha_sweep
    assert len(rows) == 6 and all(row["status"] in ("completed", "stopped early") for row in rows)
    intervals = [interval(row) for row in rows]
    overlapping = [(a, b) for i, a in enumerate(intervals) for b in intervals[i + 1 :] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, f"no two trials ran at the same time: {intervals}"
    assert "; Ray dashboard http://127.0.0.1:" in run.stdout.splitlines()[0]  # the start line


def test_asha_stops_hopeless_trials_early(asha_sweep):
    run, _, rows = asha_sweep
    stopped = [row for row in rows if row["status"] == "stopped early"]
    assert stopped and all(int(row["epochs"]) < 6 for row in stopped)
    assert f"{len(stopped)} stopped early by ASHA" in run.stdout
    hopeless = [row for row in rows if float(row["lr"]) < 1e-6]
    assert all(float(row["val_acc"]) < 0.5 for row in hopeless)


def test_best_config_feeds_the_final_run(asha_sweep):
    run, experiment_dir, rows = asha_sweep
    best = max(rows, key=lambda row: float(row["val_acc"]))
    assert float(best["val_acc"]) > 0.85
    config = load_yaml_mapping(experiment_dir / "best_config.yaml")
    assert config["lr"] == float(best["lr"]) and config["fc1"] == int(best["fc1"])
    assert parse_config(["--config", str(experiment_dir / "best_config.yaml")])["lr"] == config["lr"]
    (final_line,) = [line for line in run.stdout.splitlines() if line.startswith("final run: val_acc=")]
    final = parse_metrics(final_line.removeprefix("final run: "))
    assert final["test_acc"] > 0.85  # chance is 0.1
    assert list((experiment_dir / "final").rglob("best-*.ckpt"))


def test_experiment_dir_describes_itself(asha_sweep):
    _, experiment_dir, rows = asha_sweep
    saved = load_yaml_mapping(experiment_dir / "sweep.yaml")
    assert saved["num_samples"] == 6 and saved["command"][:4] == ["python", "-m", "sweep", "run"]
    study = load_study(experiment_dir, "asha_test")
    assert len(study.trials) == 6
    # ASHA-stopped trials are told to Optuna as pruned, with their per-epoch values, not as completed.
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    stopped = [row for row in rows if row["status"] == "stopped early"]
    assert sorted(t.last_step for t in pruned) == sorted(int(row["epochs"]) for row in stopped)
    best_stopped = max(float(row["val_acc"]) for row in stopped)
    assert all(0 < t.intermediate_values[t.last_step] <= best_stopped + 1e-6 for t in pruned)


def test_sweep_best_prints_the_table(asha_sweep):
    _, experiment_dir, rows = asha_sweep
    run = run_cli("-m", "sweep", "best", str(experiment_dir), cwd=experiment_dir)
    assert run.returncode == 0, run.stderr
    assert all(row["trial_id"] in run.stdout for row in rows) and "best_config.yaml" in run.stdout


def test_wandb_style_file_runs(tmp_path, ray_head):
    run, rows = sweep_run(ROOT / "search_spaces" / "wandb_style.yaml", tmp_path, "wb", head=ray_head, cwd=ROOT)
    assert not list((tmp_path / "wb").glob("*/output.log"))  # our trainer ran in-process: no program was started
    assert len(rows) == 6 and max(float(row["val_acc"]) for row in rows) > 0.8


def test_missing_gpu_fails_fast_with_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    before = ray_processes()
    run = run_cli(
        "-m",
        "sweep",
        "run",
        str(ROOT / "search_spaces" / "quickstart.yaml"),
        "--gpus-per-trial",
        "1",
        "--storage-path",
        str(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("sweep: error: --gpus-per-trial 1 asks for more GPUs")
    assert "--gpus-per-trial 0" in run.stderr
    assert not list(tmp_path.iterdir())  # nothing half-made
    assert_no_ray_left(before)


def ray_sessions() -> set[Path]:
    """Every Ray start leaves a session directory, also one stopped at once."""
    return set(Path("/tmp/ray").glob("session_2*"))


@pytest.mark.parametrize(
    "parameters, problem",
    [
        ("{fc1: {values: [big]}}", "key 'parameters.fc1.values': --fc1 takes int: expected int, got 'big'"),
        (
            "{fc3: {values: [8]}}",
            "key 'parameters.fc3': not a flag of training/run_experiment.py: unknown flag 'fc3' (did you mean 'fc2'?)",
        ),
        ("{lr: {min: 0.1, max: 0.01}}", "key 'parameters.lr': min (0.1) must be below max (0.01)"),
    ],
)
def test_a_bad_space_is_one_line_before_ray_starts(tmp_path, parameters, problem):
    path = tmp_path / "space.yaml"
    path.write_text(f"parameters: {parameters}\n")
    sessions = ray_sessions()
    run = run_cli("-m", "sweep", "run", str(path), cwd=tmp_path, timeout=60)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == f"sweep: error: {path}: {problem}"
    assert ray_sessions() == sessions, "Ray was started"


def test_validate_checks_files_without_ray(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("parameters: {lr: {values: [0.01, 0.001]}}\n")
    bad.write_text("parameters: {fc3: {values: [8]}}\n")
    sessions = ray_sessions()
    run = run_cli("-m", "sweep", "validate", str(good), str(bad), cwd=tmp_path, timeout=60)
    assert run.returncode == 1
    assert run.stdout.strip() == f"{good}: ok: bayes search over lr, 8 trials"
    unknown = "not a flag of training/run_experiment.py: unknown flag 'fc3' (did you mean 'fc2'?)"
    assert run.stderr.strip() == f"sweep: error: {bad}: key 'parameters.fc3': {unknown}"
    shipped = sorted(str(p) for p in (ROOT / "search_spaces").glob("*.yaml"))
    assert run_cli("-m", "sweep", "validate", *shipped, cwd=ROOT, timeout=60).returncode == 0  # where programs are
    assert ray_sessions() == sessions


def test_missing_space_file_is_one_line(tmp_path):
    run = run_cli("-m", "sweep", "run", str(tmp_path / "none.yaml"), cwd=tmp_path, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == f"sweep: error: {tmp_path / 'none.yaml'}: no such file"


def test_final_without_best_config_is_one_line(tmp_path):
    run = run_cli("-m", "sweep", "final", str(tmp_path), cwd=tmp_path, timeout=60)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1
    assert "best_config.yaml: no such file" in run.stderr


def test_trials_read_the_dataset_without_copying_it():
    """One copy per node: the arrays a trial gets from the object store are read-only views, and a whole
    epoch of batches adds no private memory of the dataset's size."""
    import os

    import ray

    from text_recognizer.data import MNISTSample
    from text_recognizer.data.base_data_module import TensorLoader

    def private_mib() -> int:
        with open(f"/proc/{os.getpid()}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith("Private_")) // 1024

    @ray.remote
    def epoch_in_a_worker(splits):
        # A first epoch over the small validation split warms torch up, so that what torch allocates
        # for itself the first time is not counted below.
        sum(len(y) for _, y in TensorLoader(splits.x_val, splits.y_val, batch_size=128, shuffle=True))
        before = private_mib()
        loader = TensorLoader(splits.x_train, splits.y_train, batch_size=128, shuffle=True)
        seen = sum(len(y) for _, y in loader)
        return splits.x_train.flags.writeable, splits.x_train.flags.owndata, seen, private_mib() - before

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        splits = MNISTSample().load_splits()
        writeable, owndata, seen, grown_mib = ray.get(epoch_in_a_worker.remote(ray.put(splits)))
    finally:
        ray.shutdown()
    assert (writeable, owndata, seen) == (False, False, 4000)
    assert grown_mib < splits.x_train.nbytes / 2**20 / 2  # 12 MiB of images: no private copy of them


def test_interrupted_sweep_keeps_its_finished_trials_and_resumes(tmp_path, ray_head):
    """Ctrl-C mid-sweep: exit code 130, results.csv and best_config.yaml hold what was done, and the
    printed `resume` command ends the sweep with every trial it asked for."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sweep",
            "run",
            str(ROOT / "tests" / "spaces" / "long.yaml"),
            "--storage-path",
            str(tmp_path),
            "--name",
            "long",
            "--address",
            ray_head.address,
        ],
        cwd=tmp_path,
        env=RAY_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    results = tmp_path / "long" / "results.csv"
    deadline = time.monotonic() + 120
    while not results.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout[-2000:] + stderr[-2000:]
    with open(results) as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert "interrupted" in statuses and any(status != "interrupted" for status in statuses)
    assert (tmp_path / "long" / "best_config.yaml").exists()
    assert "sweep: interrupted" in stderr
    resume = f"python -m sweep resume {tmp_path / 'long'}"
    assert f"`{resume}`" in stderr
    run = run_cli(*resume.split()[1:], cwd=tmp_path, env=RAY_ENV)  # on the cluster it ran on
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(results) as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert len(statuses) == 30 and set(statuses) <= {"completed", "stopped early"}, statuses


def test_failed_trial_is_reported_and_the_others_go_on(tmp_path, ray_head):
    run, rows = sweep_run(ROOT / "tests" / "spaces" / "failing.yaml", tmp_path, "failing", head=ray_head)
    rows = {row["precision"]: row for row in rows}
    assert rows["32-true"]["status"] == "completed" and float(rows["32-true"]["val_acc"]) > 0.5
    failed = rows["64-bits"]
    assert failed["status"] == "error"
    message, traceback_file = failed["error"].split(" (traceback: ")
    assert message.startswith("ValueError: Precision '64-bits' is invalid")
    assert Path(traceback_file.rstrip(")")).exists()
    assert "1 failed" in run.stdout and "FAILED trial" in run.stdout
    assert failed["retries"] == "0"  # an error of the training code would come back: it is not retried
    states = {t.params["precision"]: t.state.name for t in load_study(tmp_path / "failing", "failing_test").trials}
    assert states == {"32-true": "COMPLETE", "64-bits": "FAIL"}


def test_a_diverging_trial_stops_at_once_and_is_told_to_optuna_as_pruned(tmp_path, ray_head):
    run, rows = sweep_run(ROOT / "tests" / "spaces" / "diverging.yaml", tmp_path, "diverging", head=ray_head)
    rows = {float(row["lr"]): row for row in rows}
    diverged, trained = rows[1e6], rows[0.05]
    assert diverged["status"] == "diverged" and diverged["epochs"] == "1" and diverged["val_acc"] == ""
    assert trained["status"] == "completed" and float(trained["val_acc"]) > 0.5
    assert "1 diverged" in run.stdout and f"best trial {trained['trial_id']}" in run.stdout
    states = {t.params["lr"]: t.state.name for t in load_study(tmp_path / "diverging", "diverging_test").trials}
    assert states == {1e6: "PRUNED", 0.05: "COMPLETE"}  # TPE ignores FAIL trials: it learns from PRUNED


def test_wandb_meanings_hold_in_a_real_sweep(tmp_path, ray_head):
    """val_loss without a goal is minimized, no early_terminate stops nothing, metric.target ends the sweep."""
    run, rows = sweep_run(ROOT / "tests" / "spaces" / "wandb_semantics.yaml", tmp_path, "semantics", head=ray_head)
    assert "random search minimizing val_loss until val_loss <= 0.6, early stopping off" in run.stdout
    assert all(row["status"] == "completed" and int(row["epochs"]) == 3 for row in rows)
    hopeless = [row for row in rows if float(row["lr"]) < 1e-6]
    assert hopeless and all(float(row["val_loss"]) > 2 for row in hopeless)  # ASHA would have stopped these
    best = min(rows, key=lambda row: float(row["val_loss"]))
    assert float(best["val_loss"]) <= 0.6
    config = load_yaml_mapping(tmp_path / "semantics" / "best_config.yaml")
    assert config["lr"] == float(best["lr"]) == 0.003
    assert f"best trial {best['trial_id']}" in run.stdout
    assert len(rows) < 12, "the target did not end the sweep"  # run_cap 12
    assert f"target val_loss <= 0.6 reached by trial {best['trial_id']}" in run.stdout


def test_a_normal_draw_outside_the_flag_fails_only_its_trial(tmp_path, ray_head):
    run, rows = sweep_run(ROOT / "tests" / "spaces" / "normal_out_of_range.yaml", tmp_path, "normal", head=ray_head)
    rows = {row["status"]: row for row in rows}  # in their start order, which the two trials share
    assert sorted(rows) == ["completed", "error"]
    ran, failed = rows["completed"], rows["error"]
    assert float(ran["dropout"]) == pytest.approx(0.937, abs=1e-3) and float(ran["val_acc"]) > 0.1
    assert float(failed["dropout"]) == pytest.approx(1.070, abs=1e-3)
    assert (
        failed["error"].startswith("ValueError: parameters.dropout: 1.07")
        and "drawn from normal(mu=0.9, sigma=0.3), is not a value of --dropout: expected between 0 and 1"
        in failed["error"]
    )
