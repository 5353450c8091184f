"""What a person reads of a sweep, made from its record: results.csv, epochs.csv and best_config.yaml with
values as logged, the report (warm-start history and edits marked), the summary, and the terminal's view
on a fake terminal and in a log. Synthetic records; no Ray."""

import csv
import io
import re
import subprocess
import sys

import pytest
import yaml

from sweep.record.files import BEST_CONFIG, EPOCHS_CSV, RESULTS_CSV
from sweep.record.state import read
from sweep.views import progress
from sweep.views.exports import write_exports
from sweep.views.progress import ProgressView
from sweep.views.report import write_report
from sweep.views.summary import summary_lines
from tests.helpers import ROOT, epochs, write_record
from text_recognizer.config import resolve_config

SPACE = """\
method: random
metric: {name: val_acc, goal: maximize}
run: {data_class: MNISTSample, max_epochs: 4}
parameters:
  lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}
  precision: {values: ["32", "32-true"]}
  limit_train_batches: {values: [8, 0.5]}
search: {num_samples: 4}
"""
NODE = "0c6241e2ac7f43610edb35c397f94efbbd3003aa79843628b8c68c40"


def trial(number, lr, precision="32", batches=8, values=(), status=None, reason="", attempt=1):
    events = [{"event": "trial", "trial": number, "params": {"lr": lr, "precision": precision,
                                                               "limit_train_batches": batches}},
              {"event": "start", "trial": number, "attempt": attempt}]  # fmt: skip
    events += [{**e, "node": NODE} for e in epochs(number, list(values))]
    if status:
        events.append({"event": "end", "trial": number, "status": status, "reason": reason, "summary": {}})
    return events


def rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_exports_keep_values_as_logged_and_types_as_they_ran(tmp_path):
    events = trial(0, 0.0012345678901234567, "32", 8, [0.5, 0.91], "completed")
    events += trial(1, 0.1, "32-true", 0.5, [0.97], "failed", "RuntimeError: boom (traceback: x)")
    events += trial(2, 0.01, values=[0.99], status="diverged") + trial(3, 0.02, values=[0.3])
    state = write_record(tmp_path / "s", SPACE, events)
    write_exports(tmp_path / "s", state)
    results = rows(tmp_path / "s" / RESULTS_CSV)
    assert [(r["trial"], r["status"]) for r in results] == [
        ("0", "completed"), ("1", "failed"), ("2", "diverged"), ("3", "interrupted")]  # fmt: skip
    assert results[0]["lr"] == "0.0012345678901234567" and results[0]["val_acc"] == "0.91"  # not rounded
    assert (results[0]["best_epoch"], results[0]["epochs"], results[1]["reason"]) == (
        "2",
        "2",
        "RuntimeError: boom (traceback: x)",
    )
    assert len(rows(tmp_path / "s" / EPOCHS_CSV)) == 5
    best = yaml.safe_load((tmp_path / "s" / BEST_CONFIG).read_text())  # trial 0: 1 failed, 2 diverged
    assert (best["precision"], best["limit_train_batches"]) == ("32", 8)  # a string that looks like a number
    assert resolve_config(best, "best_config.yaml")["precision"] == "32"
    assert (tmp_path / "s" / BEST_CONFIG).read_text().startswith("# Best trial 0 of sweep 'source'")


def test_a_driver_writes_every_view_without_importing_torch(tmp_path):
    """The driver writes the views as trials end: torch imported there (as tensorboardX's writer does) cost
    it seconds and ~900 MB at the first trial's end. TensorBoard reads each trial's scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_record(tmp_path / "s", SPACE, trial(0, 0.01, values=[0.5, 0.9], status="completed") + trial(1, 0.1))
    code = (f"import sys, sweep.cli; from sweep.engine import fit; d = fit.Path({str(tmp_path / 's')!r}); "
            "state = fit.read(d); fit.write_exports(d, state); fit.write_tensorboard(d, state.trials[0]); "
            "from sweep.views.report import write_report; write_report(d, state); "
            "print(*sorted({'torch', 'pytorch_lightning', 'tensorboardX'} & set(sys.modules)))")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout == "\n", run.stdout + run.stderr[-3000:]
    events = EventAccumulator(str(tmp_path / "s" / "trials" / "0000"))
    events.Reload()
    assert [(e.step, round(e.value, 3)) for e in events.Scalars("val_acc")] == [(1, 0.5), (2, 0.9)]


def test_the_report_reads_as_the_terminal_and_marks_warm_start_history_and_edits(tmp_path):
    warm = {"event": "warm_start", "from": "/earlier", "trials": [
        {"number": 0, "params": {"lr": 0.05, "precision": "32", "limit_train_batches": 8}, "status": "completed",
         "summary": {}, "origin": "/earlier trial 7",
         "results": [{"step": 1, "metrics": {"val_acc": 0.8}, "step_time_s": 1.0, "node": "n", "gpus": "",
                      "time": 0}]}]}  # fmt: skip
    edit = {"event": "edit", "spec": None, "source": "edited.yaml", "source_copy": "source-2.yaml",
            "changes": ["lr: a -> b"], "next_trial": 2}  # fmt: skip
    events = [warm, *trial(1, 0.0012345678901234567, values=[0.5, 0.9], status="completed")]
    state = write_record(tmp_path / "s", SPACE, events)
    edit["spec"] = state.spec
    events += [edit, *trial(2, 0.003, values=[0.6, 0.7], status="completed")]
    state = write_record(tmp_path / "t", SPACE, events)
    page = write_report(tmp_path / "t", state)[0].read_text()
    table = page[page.index('<table id="trials">') :]
    assert f"<td>{NODE[:8]}</td>" in table and NODE not in table  # as the trial lines show nodes
    assert "<td>0.00123</td>" in table and "0.0012345678" not in table
    assert "<tr class=warm><td>0</td><td>warm start: /earlier trial 7</td>" in table
    assert "1 trials come from a warm start" in page and "Edited before trial 2: lr: a -&gt; b." in page
    assert '"name":"trial 1"' in page and '"name":"warm start (an earlier sweep' in page
    assert re.search(r'"text":"edit: lr: a -(>|\\u003e) b"', page)  # the edit's line on the history plot
    assert {p.name for p in (tmp_path / "t").glob("*.png")} == {
        "history.png", "parallel-coordinates.png", "importance.png", "learning-curves.png"}  # fmt: skip


def test_the_summary_says_when_the_best_trial_had_not_finished(tmp_path):
    """Ctrl-C: the best so far may be a trial cut off at 2 of its 4 epochs, and may end worse."""
    events = trial(0, 0.1, values=[0.9, 0.95]) + trial(1, 0.01, values=[0.8, 0.85, 0.9, 0.9], status="completed")
    lines = summary_lines(write_record(tmp_path / "s", SPACE, events), tmp_path / "s")
    assert lines[0] == "\n2 trials: 1 completed, 0 stopped early, 0 failed, 0 diverged, 1 interrupted"
    assert lines[lines.index("best trial 0: lr=0.1, precision=32, limit_train_batches=8") + 1] == (
        "  val_acc=0.95 at epoch 2, 2 of 4 epochs run; INTERRUPTED, not finished: resuming the sweep finishes it"
    )


def test_a_sweep_without_a_metric_lists_what_each_trial_logged_and_chooses_none(tmp_path):
    space = "program: tests/programs/train.sh\ncommand: [bash, '${program}', '${args}']\nmethod: grid\n"
    space += "parameters: {epochs: {value: 5}}\n"  # a grid of constants: one trial, no metric
    events = [{"event": "trial", "trial": 0, "params": {}}, {"event": "start", "trial": 0, "attempt": 1},
              {"event": "result", "trial": 0, "step": 0, "metrics": {"loss": 1.0361, "acc": 0.5}, "step_time_s": 1,
               "node": "n", "gpus": ""},
              {"event": "end", "trial": 0, "status": "completed", "reason": "",
               "summary": {"acc": 0.75, "best": {"min": 1}}}]  # fmt: skip
    state = write_record(tmp_path / "s", space, events)
    assert state.metric is None and state.best() is None
    write_exports(tmp_path / "s", state)
    (row,) = rows(tmp_path / "s" / RESULTS_CSV)
    assert (row["loss"], row["acc"]) == ("1.0361", "0.75")  # as logged; the summary's value where it set one
    assert not (tmp_path / "s" / BEST_CONFIG).exists()
    assert "none: a sweep without a metric has no best" in "\n".join(summary_lines(state, tmp_path / "s"))
    assert "This sweep has no metric" in write_report(tmp_path / "s", state)[0].read_text()
    # Our trainer without a metric: its trials' last epoch.
    state = write_record(tmp_path / "t", SPACE.replace("metric: {name: val_acc, goal: maximize}\n", ""),
                         trial(0, 0.1, values=[0.9, 0.8], status="completed"))  # fmt: skip
    write_exports(tmp_path / "t", state)
    (row,) = rows(tmp_path / "t" / RESULTS_CSV)
    assert (row["val_acc"], row["epochs"]) == ("0.8", "2")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_redrawn_in_place_and_a_log_a_line_at_an_interval(tmp_path, monkeypatch):
    write_record(tmp_path / "s", SPACE, trial(0, 0.1, values=[0.9]) + trial(1, 0.2))
    terminal = Terminal()
    view = ProgressView(read(tmp_path / "s", live=True), terminal)
    state = write_record(tmp_path / "t", SPACE, trial(0, 0.1, values=[0.9], status="completed") + trial(1, 0.2))
    view.state = read(tmp_path / "t", live=True)
    view.ended(state.trials[0])
    view.refresh(force=True)
    view.close()
    text = terminal.getvalue()
    assert re.search(r"\r(?!\n)", text)  # redrawn in place
    assert re.search(r"1/4 trials \|[^|]*\| 1 running, 0 stopped early, 0 failed, best val_acc 0.9 \(trial 0\)", text)
    assert (
        "[1/4] trial 0  lr=0.1 precision=32 limit_train_batches=8  val_acc 0.9 (epoch 1)  1/4 epochs  completed" in text
    )
    log = io.StringIO()
    monkeypatch.setenv("SWEEP_STATUS_EVERY_S", "0")  # how tests see status lines without waiting 10 s
    view = ProgressView(read(tmp_path / "t", live=True), log)
    view.refresh()
    assert log.getvalue().startswith("[1/4 trials] 1 running, 0 stopped early, 0 failed, best val_acc 0.9")
    assert progress.status_every_s() == 0


def test_pyproject_states_the_floors_and_pins_that_the_tests_prove():
    """CPU fused Adam needs torch 2.4, JournalFileBackend Optuna 4.0; Ray, Optuna and wandb are pinned to
    the versions these tests run with."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(line).name: Requirement(line).specifier for line in project["dependencies"]}
    assert not requirements["torch"].contains("2.3.1") and requirements["torch"].contains("2.4.0")
    assert not requirements["optuna"].contains("3.6.0")
    for name in ("ray", "optuna", "wandb", "torch", "pytorch-lightning"):
        assert requirements[name].contains(version(name)), name  # what runs here is what is stated
    assert not requirements["ray"].contains("2.61.0") and not requirements["optuna"].contains("5.2.0")
    assert project["requires-python"].startswith(">=3.11") and project["scripts"]["sweep"] == "sweep.cli:console"


@pytest.mark.parametrize("name", ["record", "spec", "engine", "trials", "views"])
def test_no_module_imports_a_private_ray_module_or_patches_a_ray_or_optuna_class(name):
    for path in (ROOT / "sweep" / name).rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"ray\.[\w.]*(_internal|\.execution)", text), path
        assert not re.search(r"^\s*(StorageContext|Checkpoint|OptunaSearch|JournalStorage)\.\w+ =", text, re.M), path
        assert "_private" not in text and "._storage" not in text, path
