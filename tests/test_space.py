"""Search-space YAMLs: every shipped file loads; W&B syntax maps to Optuna; errors name file and key."""

from pathlib import Path

import optuna
import optuna.distributions as od
import pytest
from optuna.storages.journal import JournalFileBackend

from sweep.searcher import OPTUNA_JOURNAL, journal_storage, make_searcher
from sweep.space import load_spec
from tests.conftest import ROOT
from text_recognizer.util import UserError

SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml")) + sorted((ROOT / "tests" / "spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_space_loads(path):
    spec = load_spec(str(path), cwd=str(ROOT))  # where their programs are
    assert spec.params and spec.num_samples >= 1


def test_wandb_file_keeps_its_meaning():
    spec = load_spec(str(ROOT / "search_spaces" / "wandb_style.yaml"), cwd=str(ROOT))
    assert spec.method == "random" and spec.num_samples == 6  # run_cap
    assert spec.asha == {"grace_period": 1, "reduction_factor": 2.0}  # early_terminate: hyperband
    assert spec.base_config["data_class"] == "MNISTSample" and spec.max_epochs == 4  # `value:` parameters
    assert isinstance(spec.params["fc1"].distribution, od.IntDistribution)
    assert spec.params["lr"].distribution.log
    assert spec.params["batch_size"].value(100.0) == 128  # q_log_uniform_values, q=64, int flag
    assert spec.program is None  # its program is our trainer: trials run it in-process


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("parameters: {fc1: {values: [1.5]}}", "key 'parameters.fc1.values': --fc1 takes int"),
        ("parameters: {fc3: {values: [1]}}", "key 'parameters.fc3': not a flag of training/run_experiment.py"),
        ("parameters: {lr: {distribution: normal, min: 0, max: 1}}", "key 'parameters.lr.min': distribution normal"),
        ("parameters: {lr: {distribution: gamma, min: 0, max: 1}}", "key 'parameters.lr.distribution': unknown"),
        ("parameters: {lr: {distribution: uniform, min: 1, max: 0}}", "min (1.0) must be below max (0.0)"),
        ("parameters: {fc1: {distribution: uniform, min: 1, max: 9}}", "--fc1 takes int: use int_uniform or q_uniform"),
        (
            "method: grid\nparameters: {lr: {distribution: uniform, min: 0, max: 1}}",
            "method 'grid' enumerates values; uniform has none",
        ),
        ("method: hyper\nparameters: {fc1: {values: [1]}}", "key 'method': unknown method 'hyper'"),
        ("metric: {name: acc}\nparameters: {fc1: {values: [1]}}", "key 'metric.name': trials report"),
        ("serach: {}\nparameters: {fc1: {values: [1]}}", "key 'serach': unknown key 'serach' (did you mean 'search'?)"),
        ("run: {max_epochs: two}\nparameters: {fc1: {values: [1]}}", "run: key 'max_epochs': expected int"),
        ("parameters: {fc1: [1, 2]}", "key 'parameters.fc1': expected a mapping"),
        ("parameters: {}", "key 'parameters': nothing to search"),
        ("parameters: {fc1: {values: [8]}}\nresources: {gpus_per_trial: -1}", "must be at least 0"),
    ],
)
def test_bad_space_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as error:
        load_spec(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_bad_yaml_syntax_is_one_line(tmp_path):
    path = write(tmp_path, "parameters: {fc1: [1, 2}")
    with pytest.raises(UserError, match=r"not valid YAML at line 1"):
        load_spec(path)


def test_stopped_trials_setting_picks_the_searcher(tmp_path):
    completed = load_spec(write(tmp_path, "search: {stopped_trials: completed}\nparameters: {fc1: {values: [8]}}"))
    assert completed.stopped_trials == "completed"
    default = load_spec(str(ROOT / "search_spaces" / "quickstart.yaml"))
    assert default.stopped_trials == "pruned"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    stopped_result = {"training_iteration": 1, "epoch": 1, "val_acc": 0.5, "val_loss": 1.0}
    states = []
    for spec, directory in ((completed, tmp_path / "a"), (default, tmp_path / "b")):
        searcher = make_searcher(spec, directory)
        searcher.suggest("trial_0")
        searcher.on_trial_complete("trial_0", result=stopped_result)  # ASHA stopped it after one epoch
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(directory / OPTUNA_JOURNAL)))
        states.append(optuna.load_study(study_name=spec.name, storage=storage).trials[0].state.name)
    assert states == ["COMPLETE", "PRUNED"]


def test_optuna_hears_each_epoch_once_when_tunes_count_of_results_lags(tmp_path, capfd):
    """A trial continued from a checkpoint newer than Tune's record of it (or retried) reports epochs again,
    with a training_iteration behind its epoch: Optuna's steps are the epochs, each told once, and the
    trial that trained all its epochs is COMPLETE, not stopped early."""
    space = "metric: {name: val_loss}\nrun: {max_epochs: 3}\nparameters: {fc1: {values: [8]}}"
    spec = load_spec(write(tmp_path, space))
    searcher = make_searcher(spec, tmp_path)
    searcher.suggest("trial_0")
    for iteration, epoch in ((1, 1), (2, 2), (1, 2), (2, 3)):  # continued from epoch 1's checkpoint, after epoch 2
        searcher.on_trial_result("trial_0", {"training_iteration": iteration, "epoch": epoch, "val_loss": 1.0 / epoch})
    searcher.on_trial_complete("trial_0", result={"training_iteration": 2, "epoch": 3, "val_loss": 1 / 3})
    (trial,) = optuna.load_study(study_name=spec.name, storage=journal_storage(tmp_path)).trials
    assert trial.state.name == "COMPLETE" and trial.intermediate_values == {1: 1.0, 2: 0.5, 3: 1 / 3}
    assert "already reported" not in capfd.readouterr().err


def test_same_seed_gives_same_first_optuna_suggestions(tmp_path):
    spec = load_spec(str(ROOT / "search_spaces" / "quickstart.yaml"))

    def first_suggestions(directory: Path, seed: int) -> list[dict]:
        directory.mkdir()
        searcher = make_searcher(spec.__class__(**{**spec.__dict__, "seed": seed}), directory)
        return [searcher.suggest(f"trial_{i}") for i in range(3)]

    first = first_suggestions(tmp_path / "a", seed=0)
    assert first == first_suggestions(tmp_path / "b", seed=0)
    assert first != first_suggestions(tmp_path / "c", seed=1)
    assert (tmp_path / "a" / "optuna.journal").stat().st_size > 0


def test_the_dashboard_line_warns_when_the_dashboard_is_reachable_from_other_machines():
    from types import SimpleNamespace

    from sweep.cluster import dashboard_text

    assert "WARNING" not in dashboard_text(SimpleNamespace(dashboard_url="127.0.0.1:8265"))
    exposed = dashboard_text(SimpleNamespace(dashboard_url="10.0.0.5:8265"))
    assert exposed.startswith("; Ray dashboard http://10.0.0.5:8265") and "the token is what protects it" in exposed
    assert dashboard_text(SimpleNamespace(dashboard_url="")) == ""  # a cluster without a dashboard


@pytest.mark.parametrize(
    "run, resources, problem",
    [
        (
            "{}",
            "{gpus_per_trial: 2}",
            "a trial of our trainer is one process; several GPUs would start Lightning's DDP",
        ),
        (
            "{gpus: 1}",
            "{gpus_per_trial: 0}",
            "key 'run.gpus'/'run.accelerator': trials train on a GPU, but reserve none",
        ),
        ("{accelerator: gpu}", "{}", "every trial would fail; pass --gpus-per-trial 1"),
        ("{accelerator: cpu}", "{gpus_per_trial: 1}", "key 'run.accelerator': cpu, with 1 GPU reserved per trial"),
        ("{}", "{gpus_per_trial: 0.3}", "0.3 does not divide a GPU, so part of each GPU stays idle: use 1/n"),
        ("{devices: 2}", "{gpus_per_trial: 1}", "a trial gets 1 GPU: ask for 1 at most"),
    ],
)
def test_what_a_trial_asks_of_ray_is_checked_against_what_it_will_use(tmp_path, run, resources, problem):
    path = write(tmp_path, f"run: {run}\nresources: {resources}\nparameters: {{fc1: {{values: [8]}}}}")
    with pytest.raises(UserError) as error:
        load_spec(path)
    assert str(error.value).startswith(f"{path}: key ") and problem in str(error.value)


def test_the_command_lines_gpus_are_checked_too(tmp_path):
    from sweep.cli import build_parser, overridden

    spec = load_spec(write(tmp_path, "run: {accelerator: cpu}\nparameters: {fc1: {values: [8]}}"))
    args = build_parser().parse_args(["run", "space.yaml", "--gpus-per-trial", "0.5"])
    with pytest.raises(UserError, match="cpu, with 0.5 GPU reserved per trial that would stay idle"):
        overridden(spec, args)
    fine = load_spec(str(ROOT / "search_spaces" / "mlp.yaml"))  # one GPU per trial, accelerator auto
    assert (
        overridden(fine, build_parser().parse_args(["run", "mlp.yaml", "--gpus-per-trial", "0.25"])).gpus_per_trial
        == 0.25
    )
