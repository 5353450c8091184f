"""What a person sees of a sweep: the terminal (a log and a TTY), the records that Tune, Optuna and we
keep of each trial, the report's files and TensorBoard's event files. Real sweeps, through the CLI."""

import csv
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.conftest import RAY_ENV, ROOT, load_study, run_cli, sweep_run

pytestmark = pytest.mark.slow
TRIAL_LINE = re.compile(r"^\[ *\d+/(\d+)\] trial (\w+)  .*  val_acc (\d\.\d{4}) \(epoch \d+\)  \d+/\d+ epochs  ")


def read_rows(experiment_dir: Path) -> list[dict]:
    with open(experiment_dir / "results.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """`make run`'s command: the quickstart sweep and its final run, its output going to a pipe (a log)."""
    tmp = tmp_path_factory.mktemp("quickstart")
    space = str(ROOT / "search_spaces" / "quickstart.yaml")
    run = run_cli("-m", "sweep", "run", space, "--final", "--storage-path", str(tmp), "--name", "qs", cwd=tmp)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, tmp / "qs"


def test_the_quickstart_prints_at_most_40_lines(quickstart):
    run, experiment_dir = quickstart
    output = run.stdout + run.stderr
    assert len(output.splitlines()) <= 40, output
    trial_lines = [line for line in run.stdout.splitlines() if TRIAL_LINE.match(line)]
    rows = read_rows(experiment_dir)
    assert len(trial_lines) == len(rows) == 10
    assert not any(box in output for box in "╭│╰") and "/tmp/ray" not in output  # no Tune tables or hints
    start = run.stdout.splitlines()[0]
    assert start.startswith("sweep 'quickstart': 10 trials, 2 at a time, bayes search maximizing val_acc")
    assert str(experiment_dir) in start and "Ray dashboard http://127.0.0.1:" in start


def test_the_same_best_figure_everywhere(quickstart):
    run, experiment_dir = quickstart
    rows = read_rows(experiment_dir)
    best = max(rows, key=lambda row: float(row["val_acc"]))
    summary = re.search(r"best trial (\w+): .*\n  val_acc=(\d\.\d{4}) at epoch", run.stdout)
    assert summary.groups() == (best["trial_id"], best["val_acc"])
    per_trial = {m.group(2): m.group(3) for m in map(TRIAL_LINE.match, run.stdout.splitlines()) if m}
    assert per_trial == {row["trial_id"]: row["val_acc"] for row in rows}
    epochs = list(csv.DictReader(open(experiment_dir / "epochs.csv")))
    assert max(float(e["val_acc"]) for e in epochs if e["trial_id"] == best["trial_id"]) == pytest.approx(
        float(best["val_acc"]), abs=5e-5
    )
    assert (
        "best_config.yaml" in run.stdout
        and f"# Best trial {best['trial_id']}" in (experiment_dir / "best_config.yaml").read_text()
    )


def test_run_writes_the_report_and_tensorboard_has_every_trial(quickstart):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, experiment_dir = quickstart
    assert f"report:      {experiment_dir / 'report.html'} (4 PNGs beside it)" in run.stdout
    assert f"TensorBoard: tensorboard --logdir {experiment_dir}" in run.stdout
    pngs = {path.name for path in experiment_dir.glob("*.png")}
    assert pngs == {"history.png", "parallel-coordinates.png", "importance.png", "learning-curves.png"}
    page = (experiment_dir / "report.html").read_text()
    assert "<script src=" not in page  # plotly.js is inline: the page opens offline
    epochs = {row["trial_id"]: int(row["epochs"]) for row in read_rows(experiment_dir)}
    for trial_id, count in epochs.items():
        (trial_dir,) = experiment_dir.glob(f"run_trial_{trial_id}_*")
        events = EventAccumulator(str(trial_dir))
        events.Reload()
        assert len(events.Scalars("ray/tune/val_acc")) == count
    final = EventAccumulator(str(next((experiment_dir / "final").glob("*/version_0"))))
    final.Reload()
    assert len(final.Scalars("val_acc")) >= 8  # the final run's 8 epochs


def test_a_terminal_gets_a_bar_redrawn_in_place(tmp_path, ray_head):
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # a 200-column terminal
    command = [sys.executable, "-m", "sweep", "run", str(ROOT / "tests/spaces/asha.yaml"), "--storage-path",
               str(tmp_path), "--name", "tty", "--address", ray_head.address]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, env=RAY_ENV, stdout=child, stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the sweep has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(timeout=300) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert re.search(r"\r(?!\n)", text), "nothing was redrawn in place"  # a terminal's \n arrives as \r\n
    assert re.search(r"\d+/6 trials \|[^|]*\| \d running, \d stopped early, 0 failed", text)
    assert len(set(re.findall(r"\[\d/6\] trial (\w+)", text))) == 6
    assert "6 trials: " in text


def test_tune_optuna_and_results_csv_agree_on_rounded_values(tmp_path, ray_head):
    sweep_run(ROOT / "tests/spaces/q_rounded.yaml", tmp_path, "q", head=ray_head)
    experiment_dir = tmp_path / "q"
    rows = {row["trial_id"]: row for row in read_rows(experiment_dir)}
    study = load_study(experiment_dir, "q_test")
    assert len(study.trials) == len(rows) == 4
    for trial in study.trials:
        trial_id = trial.user_attrs["tune_trial_id"]
        (trial_dir,) = experiment_dir.glob(f"run_trial_{trial_id}_*")
        ran = json.loads((trial_dir / "params.json").read_text())  # Tune's record
        assert ran["fc1"] % 16 == 0 and ran["batch_size"] % 32 == 0 and round(ran["dropout"] / 0.05, 9) % 1 == 0
        assert type(ran["fc1"]) is int and type(ran["batch_size"]) is int
        assert {k: str(v) for k, v in ran.items()} == {k: rows[trial_id][k] for k in ran}  # results.csv
        shown = {**trial.params, **{k: v for k, v in trial.user_attrs.items() if k != "tune_trial_id"}}
        assert shown == ran  # Optuna: raw samples, overridden by the values that ran
        assert trial.params["fc1"] != ran["fc1"] or trial.params["dropout"] != ran["dropout"]  # rounded
