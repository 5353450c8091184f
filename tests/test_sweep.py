"""Real sweeps through the real CLI, on a real Ray node shared by the tests (2 CPUs, 2 GPUs that Ray assigns
though this machine has none): Optuna and Lightning trials on the MNIST sample, what they leave in the
experiment directory, and the GPUs each trial may see."""

import json
import pickletools
import re
import time
from datetime import datetime

import optuna
import pytest

from sweep.record.state import read
from tests.helpers import ROOT, load_study, parse_metrics, read_csv, sweep_cli, sweep_run
from text_recognizer.util import load_yaml_mapping
from training.run_experiment import parse_config

pytestmark = pytest.mark.slow
TRIAL_LINE = re.compile(r"^\[ *\d+/6\] trial (\d+)  .*  val_acc (\d\.\d+) \(epoch \d+\)  \d+/6 epochs  ")


def interval(row: dict) -> tuple[float, float]:
    start = datetime.fromisoformat(row["start"]).timestamp()
    return start, start + float(row["duration_s"])


def test_a_sweep_runs_every_trial_two_at_a_time_and_says_so_in_few_lines(asha_sweep):
    run, experiment_dir, rows = asha_sweep
    assert len(rows) == 6 and all(row["status"] in ("completed", "stopped early") for row in rows)
    intervals = [interval(row) for row in rows]
    overlapping = [(a, b) for i, a in enumerate(intervals) for b in intervals[i + 1 :] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, f"no two trials ran at the same time: {intervals}"
    output = run.stdout + run.stderr
    assert len(output.splitlines()) <= 30, output  # a start line, a line per trial, the summary, the final run
    assert not any(box in output for box in "╭│╰") and "/tmp/ray" not in output  # no Tune tables or hints
    start = run.stdout.splitlines()[0]
    assert start.startswith("sweep 'asha_test': 6 trials, 2 at a time, random search maximizing val_acc")
    assert str(experiment_dir) in start and "early stopping on" in start


def test_early_stopping_stops_hopeless_trials_and_optuna_hears_them_pruned(asha_sweep):
    run, experiment_dir, rows = asha_sweep
    stopped = [row for row in rows if row["status"] == "stopped early"]
    assert stopped and all(int(row["epochs"]) < 6 for row in stopped)
    assert all(row["reason"].startswith("stopped at epoch") for row in stopped)
    assert f"{len(stopped)} stopped early" in run.stdout
    hopeless = [row for row in rows if float(row["lr"]) < 1e-6]
    assert all(float(row["val_acc"]) < 0.5 for row in hopeless)
    study = load_study(experiment_dir, "asha_test")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert sorted(t.number for t in pruned) == sorted(int(row["trial"]) for row in stopped)
    assert all(t.last_step == int(rows[t.number]["epochs"]) for t in pruned)  # their values per epoch kept


def test_the_same_figures_everywhere(asha_sweep):
    """The terminal's lines, results.csv, epochs.csv, best_config.yaml, the record and Optuna's study agree
    on every trial's values, as they ran (q-rounded)."""
    run, experiment_dir, rows = asha_sweep
    per_trial = {m.group(1): m.group(2) for m in map(TRIAL_LINE.match, run.stdout.splitlines()) if m}
    assert per_trial == {row["trial"]: f"{float(row['val_acc']):.4g}" for row in rows}
    best = max(rows, key=lambda row: float(row["val_acc"]))
    summary = re.search(r"best trial (\d+): .*\n  val_acc=(\d\.\d+) at epoch", run.stdout)
    assert summary.groups() == (best["trial"], f"{float(best['val_acc']):.4g}")
    state = read(experiment_dir)
    curves = {}
    for line in read_csv(experiment_dir / "epochs.csv"):
        curves.setdefault(line["trial"], []).append(float(line["val_acc"]))
    for row in rows:
        trial = state.trials[int(row["trial"])]
        assert float(row["val_acc"]) == trial.value("val_acc", "max") == max(curves[row["trial"]])  # as logged
        assert row["batch_size"] == str(trial.params["batch_size"]) and trial.params["batch_size"] % 32 == 0
        assert round(trial.params["dropout"] / 0.05, 9) % 1 == 0 and type(trial.params["batch_size"]) is int
    study = load_study(experiment_dir, "asha_test")
    for optuna_trial in study.trials:
        ran = state.trials[optuna_trial.number].params
        shown = {**optuna_trial.params, **optuna_trial.user_attrs}  # Optuna's samples, then the values that ran
        assert {name: shown[name] for name in ran} == ran
    assert f"# Best trial {best['trial']} " in (experiment_dir / "best_config.yaml").read_text()


def test_best_config_feeds_the_final_run(asha_sweep):
    run, experiment_dir, rows = asha_sweep
    best = max(rows, key=lambda row: float(row["val_acc"]))
    assert float(best["val_acc"]) > 0.85
    config = load_yaml_mapping(experiment_dir / "best_config.yaml")
    assert config["lr"] == float(best["lr"]) and config["fc1"] == int(best["fc1"])
    assert parse_config(["--config", str(experiment_dir / "best_config.yaml")])["lr"] == config["lr"]
    (final_line,) = [line for line in run.stdout.splitlines() if line.startswith("final run: val_acc=")]
    final_line, gpus = final_line.split(" (on Ray, GPUs: ")
    assert parse_metrics(final_line.removeprefix("final run: "))["test_acc"] > 0.85  # chance is 0.1
    assert gpus == "none)"  # a CPU sweep's final run sees no GPU, though the node has 2
    assert list((experiment_dir / "final").rglob("best-*.ckpt"))


def test_the_experiment_directory_holds_the_record_its_views_and_nothing_pickled_of_ours(asha_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, experiment_dir, rows = asha_sweep
    names = {path.name for path in experiment_dir.iterdir()}
    assert names >= {"events.jsonl", "source.yaml", "results.csv", "epochs.csv", "best_config.yaml",
                     "optuna.journal", "report.html", "trials", "final"}  # fmt: skip
    assert (experiment_dir / "source.yaml").read_text() == (ROOT / "tests/spaces/asha.yaml").read_text()
    assert not [p for p in experiment_dir.rglob("*") if p.suffix in (".pkl", ".pickle")]
    for path in (p for p in experiment_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if data[:1] == b"\x80":  # a pickle: it names no module of this project
            assert not any("sweep" in str(arg) for _, arg, _ in pickletools.genops(data) if arg), path
    assert f"report:      {experiment_dir / 'report.html'} (4 PNGs beside it)" in run.stdout
    for row in rows:  # TensorBoard: each trial's epochs, in its directory, named by its number
        events = EventAccumulator(str(experiment_dir / "trials" / f"{int(row['trial']):04d}"))
        events.Reload()
        assert len(events.Scalars("val_acc")) == int(row["epochs"])
    assert not list(experiment_dir.glob("trials/*/checkpoint.ckpt"))  # ended trials keep none


def test_sweep_best_prints_the_table_and_the_best_config(asha_sweep):
    _, experiment_dir, rows = asha_sweep
    run = sweep_cli("best", str(experiment_dir), cwd=experiment_dir)
    assert run.returncode == 0, run.stderr
    table = run.stdout.split("\n\n")[0].splitlines()
    assert table[0].split()[:2] == ["trial", "status"] and len(table) == 7
    assert f"{experiment_dir / 'best_config.yaml'}:\n# Best trial" in run.stdout


def test_trials_see_exactly_the_gpus_ray_gave_them(asha_sweep, troubles):
    """The shared node has 2 GPUs (Ray's count; this machine has none): trials that ask for none see none,
    however many the node has; trials with half a GPU each see one, two trials to each GPU."""
    _, experiment_dir, _ = asha_sweep
    assert {r["gpus"] for t in read(experiment_dir).trials.values() for r in t.results} == {""}
    run, _, experiment_dir = troubles  # half a GPU per trial
    state = read(experiment_dir)
    seen = [{r["gpus"] for trial, r in state.order if trial == number} for number in state.trials]
    seen = [gpus for gpus in seen if gpus]  # the trials that reported a step
    assert seen and all(len(gpus) == 1 for gpus in seen) and {g for gpus in seen for g in gpus} <= {"0", "1"}
    assert "2 at a time" in run.stdout  # 2 CPUs: the CPUs, not the 4 half-GPUs, limit it here
    (final,) = [line for line in run.stdout.splitlines() if line.startswith("final run: val_acc=")]
    assert re.search(r"\(on Ray, GPUs: [01]\)$", final)  # a GPU sweep's final run asks Ray for a whole GPU


@pytest.fixture(scope="module")
def troubles(tmp_path_factory, ray_head):
    """A grid of trials that fail and diverge beside ones that train, with half a GPU each."""
    tmp = tmp_path_factory.mktemp("troubles")
    run, rows = sweep_run(ROOT / "tests/spaces/troubles.yaml", tmp, "troubles", "--gpus-per-trial", "0.5", "--final",
                          head=ray_head)  # fmt: skip
    return run, rows, tmp / "troubles"


def test_trials_that_fail_or_diverge_end_alone_and_say_why(troubles):
    run, rows, experiment_dir = troubles
    rows = {(row["precision"], float(row["lr"])): row for row in rows}
    assert {k: row["status"] for k, row in rows.items()} == {
        ("32-true", 1e6): "diverged", ("32-true", 0.05): "completed",
        ("64-bits", 1e6): "failed", ("64-bits", 0.05): "failed"}  # fmt: skip
    failed = rows[("64-bits", 0.05)]
    message, traceback_file = failed["reason"].split(" (traceback: ")
    assert message.startswith("ValueError: Precision '64-bits' is invalid")
    assert open(traceback_file.rstrip(")")).read().startswith("Traceback")
    assert failed["retries"] == "0"  # an error of the training code would come back: it is not retried
    assert "2 failed" in run.stdout and "FAILED trial" in run.stdout and "1 diverged" in run.stdout
    diverged = rows[("32-true", 1e6)]
    assert diverged["epochs"] in ("0", "1") and diverged["val_acc"] == ""
    assert float(rows[("32-true", 0.05)]["val_acc"]) > 0.5
    study = load_study(experiment_dir, "troubles_test")
    states = {(t.params["precision"], t.params["lr"]): t.state.name for t in study.trials}
    assert states == {("32-true", 1e6): "PRUNED", ("32-true", 0.05): "COMPLETE",
                      ("64-bits", 1e6): "FAIL", ("64-bits", 0.05): "FAIL"}  # fmt: skip
    # (TPE ignores FAIL trials: it learns from a diverged one, PRUNED)


def test_wandb_meanings_hold_in_a_real_sweep(tmp_path, ray_head):
    """val_loss without a goal is minimized, no early_terminate stops nothing, metric.target ends the sweep."""
    run, rows = sweep_run(ROOT / "tests/spaces/wandb_semantics.yaml", tmp_path, "semantics", head=ray_head)
    assert "random search minimizing val_loss until val_loss <= 0.6, early stopping off" in run.stdout
    assert all(row["status"] == "completed" and int(row["epochs"]) == 3 for row in rows)
    hopeless = [row for row in rows if float(row["lr"]) < 1e-6]
    assert hopeless and all(float(row["val_loss"]) > 2 for row in hopeless)  # ASHA would have stopped these
    best = min(rows, key=lambda row: float(row["val_loss"]))
    assert float(best["val_loss"]) <= 0.6 and float(best["lr"]) == 0.003
    assert len(rows) < 12, "the target did not end the sweep"  # run_cap 12
    assert f"target val_loss <= 0.6 reached by trial {best['trial']}" in run.stdout


def test_run_final_on_a_finished_sweep_and_one_line_without_one(asha_sweep, tmp_path):
    _, experiment_dir, _ = asha_sweep
    run = sweep_cli("final", str(experiment_dir), "--max-epochs", "1", cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert parse_metrics(run.stdout.splitlines()[-1].removeprefix("final run: "))["test_acc"] > 0.5
    none = sweep_cli("final", str(tmp_path), cwd=tmp_path, timeout=60)
    assert none.returncode == 1 and none.stderr.strip() == (
        f"sweep: error: {tmp_path}: not a sweep's experiment directory (no record: events.jsonl)")  # fmt: skip
    assert json.loads((experiment_dir / "events.jsonl").read_text().splitlines()[0])["event"] == "sweep"


def test_a_second_sweep_into_the_same_directory_is_one_line_at_once(asha_sweep, tmp_path):
    _, experiment_dir, _ = asha_sweep
    started = time.monotonic()
    run = sweep_cli("run", str(ROOT / "tests/spaces/asha.yaml"), "--storage-path",
                  str(experiment_dir.parent), "--name", experiment_dir.name, cwd=tmp_path, timeout=60)  # fmt: skip
    assert time.monotonic() - started < 15 and run.returncode == 1
    assert run.stderr.strip() == (f"sweep: error: {experiment_dir} already exists: continue that sweep with "
                                  f"`sweep resume {experiment_dir}`, or pass another --name")  # fmt: skip
