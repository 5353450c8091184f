"""The experiment directory's files: written whole and to disk, read back with the types the sweep's spec
gives, and one definition of the best trial for results.csv, best_config.yaml and the report."""

import os
import threading
from pathlib import Path

from sweep import files
from sweep.files import best_row, write_atomically
from sweep.results import ResultsWriter, epoch_columns, load_rows
from sweep.space import load_spec
from text_recognizer.config import resolve_config
from text_recognizer.util import load_yaml_mapping


def test_atomic_writes_reach_the_disk_and_writers_never_share_a_file(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    path = tmp_path / "results.csv"
    write_atomically(path, "a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n"
    assert synced[-1] == str(tmp_path) and synced[-2].startswith(str(tmp_path / ".results.csv."))  # file, then dir

    errors = []

    def write_many(text: str):
        try:
            for _ in range(200):
                write_atomically(path, text)
        except Exception as exc:  # a shared temporary name: one writer renames the other's file away
            errors.append(exc)

    threads = [threading.Thread(target=write_many, args=(text * 1000,)) for text in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and path.read_text() in ("x" * 1000, "y" * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file left


def space(tmp_path: Path, parameters: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(f"run: {{data_class: MNISTSample, max_epochs: 4}}\nparameters: {parameters}\n")
    return path


def written(spec, tmp_path: Path, rows: list[dict]) -> ResultsWriter:
    """results.csv and best_config.yaml as the sweep writes them, for these trials."""
    writer = ResultsWriter(spec, tmp_path)
    for i, values in enumerate(rows):
        row = writer.row(type("Trial", (), {"trial_id": f"t{i}", "config": values["config"]})())
        row.update({k: v for k, v in values.items() if k != "config"}, start_time=1.8e9 + i)
    writer.write()
    return writer


def test_values_come_back_with_the_types_of_the_spec(tmp_path):
    """A string flag that looks like a number stays a string (`precision: "32"`), so that best_config.yaml
    passes its own check after a resume; an int|float flag keeps 8 batches and a fraction apart."""
    spec = load_spec(
        str(space(tmp_path, '{precision: {values: ["32", "32-true"]}, limit_train_batches: {values: [8, 0.5]}}'))
    )
    rows = [
        {"config": {"precision": "32", "limit_train_batches": 8}, "status": "completed", "val_acc": 0.9, "epochs": 4},
        {"config": {"precision": "32-true", "limit_train_batches": 0.5}, "status": "completed", "val_acc": 0.8,
         "epochs": 4},
    ]  # fmt: skip
    written(spec, tmp_path, rows)
    back = load_rows(tmp_path, spec)
    assert [(r["precision"], r["limit_train_batches"]) for r in back] == [("32", 8), ("32-true", 0.5)]
    assert type(back[0]["limit_train_batches"]) is int and type(back[1]["limit_train_batches"]) is float
    ResultsWriter(spec, tmp_path).setup()  # a resumed sweep's writer: reads results.csv back, writes it again
    config = load_yaml_mapping(tmp_path / "best_config.yaml")
    assert config["precision"] == "32" and resolve_config(config, "best_config.yaml")["precision"] == "32"


def test_one_best_trial_for_best_config_and_the_report(tmp_path):
    """A trial that failed after a good epoch is not the best, in best_config.yaml nor in the report."""
    from sweep.report import write_report
    from sweep.runner import save_spec

    spec = load_spec(str(space(tmp_path, "{lr: {values: [0.1, 0.01, 0.001]}}")))
    experiment_dir = tmp_path / "sweep"
    experiment_dir.mkdir()
    save_spec(spec, experiment_dir, ["run", str(tmp_path / "space.yaml")])
    rows = [
        {"config": {"lr": 0.1}, "status": "error", "val_acc": 0.97, "epochs": 2, "error": "RuntimeError: boom"},
        {"config": {"lr": 0.01}, "status": "completed", "val_acc": 0.91, "epochs": 4, "best_epoch": 4},
        {"config": {"lr": 0.001}, "status": "diverged", "val_acc": 0.99, "epochs": 1},
    ]
    written(spec, experiment_dir, rows)
    assert "# Best trial t1 " in (experiment_dir / "best_config.yaml").read_text()
    report, _ = write_report(experiment_dir)
    assert "best val_acc 0.9100, trial t1" in report.read_text()
    typed = files.read_results(experiment_dir, load_yaml_mapping(experiment_dir / "sweep.yaml"))
    assert best_row(typed, "val_acc", "max")["trial_id"] == "t1"


def test_a_resumed_sweep_lists_a_trial_that_started_after_results_csv_was_written(tmp_path):
    """Killed after t0 ended and t1 started: results.csv has t0 only. Resumed and cut off (Ctrl-C) before
    t1 reports again: t1's row comes from its lines in epochs.csv, interrupted, its best epoch kept; t2,
    which Tune's record does not know (it starts again as new), gets none."""
    spec = load_spec(str(space(tmp_path, "{lr: {values: [0.1, 0.01]}}")))
    written(spec, tmp_path, [{"config": {"lr": 0.1}, "status": "completed", "val_acc": 0.9, "epochs": 4}])
    epochs = ["t0,1,0.5,0.9,1,n", "t1,1,0.6,0.8,1.5,n", "t1,2,0.7,0.7,1.5,n", "t1,3,nan,nan,1.5,n", "t2,1,0.8,0.6,1,n"]
    assert epoch_columns(spec) == ["trial_id", "epoch", "val_acc", "val_loss", "epoch_time_s", "node"]
    (tmp_path / "epochs.csv").write_text("\n".join([",".join(epoch_columns(spec)), *epochs]) + "\n")
    resumed = ResultsWriter(spec, tmp_path)
    resumed.setup()
    trial = type("Trial", (), {"config": {"lr": 0.01}, "last_result": {"trial_start": 1.8e9 + 5}})
    resumed.on_step_begin(0, [type("T0", (trial,), {"trial_id": "t0"})(), type("T1", (trial,), {"trial_id": "t1"})()])
    resumed.finish()
    rows = {row["trial_id"]: row for row in load_rows(tmp_path, spec)}
    assert rows.keys() == {"t0", "t1"} and rows["t0"]["status"] == "completed"
    assert {k: rows["t1"][k] for k in ("status", "val_acc", "best_epoch", "epochs", "train_time_s", "node")} == {
        "status": "interrupted", "val_acc": 0.7, "best_epoch": 2, "epochs": 3, "train_time_s": 4.5, "node": "n"
    }  # fmt: skip


def test_a_fit_that_ended_before_its_sweep_did_was_interrupted(tmp_path):
    """Ctrl-C as the only running trial ends leaves no trial cut off, but fewer trials than asked for: the
    command says interrupted (exit 130, no final run, no growing), as `resume` then finds work to do."""
    from sweep.runner import unfinished

    spec = load_spec(str(space(tmp_path, "{lr: {values: [0.1, 0.01]}}\nsearch: {num_samples: 3}")))
    t0, t1, t2 = ({"trial_id": f"t{i}", "status": "completed", "val_acc": 0.7} for i in range(3))
    assert unfinished([t0, t1], spec) and unfinished([t0, t1, {**t2, "status": "interrupted"}], spec)
    assert not unfinished([t0, t1, {**t2, "status": "error"}], spec)
    reached = load_spec(
        str(space(tmp_path, "{lr: {values: [0.1]}}\nmetric: {name: val_acc, goal: maximize, target: 0.8}"))
    )
    assert unfinished([t0], reached) and not unfinished([{**t0, "val_acc": 0.9}], reached)  # W&B's target


def test_a_sweep_killed_before_any_trial_ended_has_no_rows_not_an_error(tmp_path):
    spec = load_spec(str(space(tmp_path, "{lr: {values: [0.1]}}")))
    assert not (tmp_path / "results.csv").exists() and load_rows(tmp_path, spec) == []


def test_the_reports_table_reads_as_the_terminal_and_its_curves_name_their_trials(tmp_path):
    """Node ids shortened as the trial lines do, values rounded as the terminal does, each learning curve
    named by its trial (hover and legend)."""
    from sweep.report import write_report
    from sweep.runner import save_spec

    spec = load_spec(str(space(tmp_path, "{lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}}")))
    experiment_dir = tmp_path / "sweep"
    experiment_dir.mkdir()
    save_spec(spec, experiment_dir, ["run", str(tmp_path / "space.yaml")])
    node = "0c6241e2ac7f43610edb35c397f94efbbd3003aa79843628b8c68c40"
    rows = [{"config": {"lr": 0.0012345678901234567}, "status": "completed", "val_acc": 0.9, "epochs": 4,
             "best_epoch": 4, "node": node}]  # fmt: skip
    written(spec, experiment_dir, rows)
    (experiment_dir / "epochs.csv").write_text(
        "trial_id,epoch,val_acc,val_loss,epoch_time_s,node\n"
        + "".join(f"t0,{e},0.{e},1.0,0.1,{node}\n" for e in (1, 2))
    )
    page = write_report(experiment_dir)[0].read_text()
    table = page[page.index('<table id="trials">') :]
    assert f"<td>{node[:8]}</td>" in table and node not in table
    assert "<td>0.00123</td>" in table and "0.0012345678" not in table
    assert '"name":"#0 t0"' in page and '"hovertemplate":"#0 t0' in page  # its trial, by the table's # and id


def test_pyproject_states_the_floors_and_pins_that_the_tests_prove():
    """CPU fused Adam needs torch 2.4, JournalFileBackend Optuna 4.0; Ray and Optuna are pinned to the
    versions these tests run with (resume reaches into Ray's OptunaSearch), and so is wandb."""
    from importlib.metadata import version

    import tomllib
    from packaging.requirements import Requirement

    from tests.conftest import ROOT

    requirements = {
        Requirement(line).name: Requirement(line).specifier
        for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    assert not requirements["torch"].contains("2.3.1") and requirements["torch"].contains("2.4.0")
    assert not requirements["optuna"].contains("3.6.0")
    for name in ("ray", "optuna", "wandb", "torch", "pytorch-lightning"):
        assert requirements[name].contains(version(name)), name  # what runs here is what is stated
    assert not requirements["ray"].contains("2.61.0") and not requirements["optuna"].contains("5.2.0")


def test_the_summary_says_when_the_best_trial_had_not_finished(tmp_path, capsys):
    """Ctrl-C: the best so far may be a trial cut off at 4 of its 8 epochs, and may end worse."""
    from sweep.cli import print_summary
    from sweep.runner import SweepResult

    spec = load_spec(str(space(tmp_path, "{lr: {values: [0.1, 0.01]}}")))
    rows = [
        {"config": {"lr": 0.1}, "status": "interrupted", "val_acc": 0.95, "epochs": 2, "best_epoch": 2},
        {"config": {"lr": 0.01}, "status": "completed", "val_acc": 0.9, "epochs": 4, "best_epoch": 4},
    ]
    writer = written(spec, tmp_path, rows)
    print_summary(spec, SweepResult(tmp_path, writer.ordered_rows(), writer.best_row()))
    best = capsys.readouterr().out.split("best trial t0: lr=0.1\n")[1].splitlines()[0]
    assert (
        best
        == "  val_acc=0.9500 at epoch 2, 2 of 4 epochs run; INTERRUPTED, not finished: resuming the sweep finishes it"
    )
