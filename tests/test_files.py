"""The experiment directory's files: written whole and to disk, read back with the types the sweep's spec
gives, and one definition of the best trial for results.csv, best_config.yaml and the report."""

import os
import threading
from pathlib import Path

from sweep import files
from sweep.files import best_row, write_atomically
from sweep.results import ResultsWriter, load_rows
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


def test_a_sweep_killed_before_any_trial_ended_has_no_rows_not_an_error(tmp_path):
    spec = load_spec(str(space(tmp_path, "{lr: {values: [0.1]}}")))
    assert not (tmp_path / "results.csv").exists() and load_rows(tmp_path, spec) == []
