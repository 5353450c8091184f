"""Sweep files as people write them: every shipped file loads; each W&B key and distribution keeps W&B's
meaning; what cannot mean anything here is one line naming the file and the key. No Ray here.

Each distribution is parsed, then sampled 1,000 times by a seeded Optuna random sampler (what `method:
random` runs), and the values are checked for range, type and scale.
"""

import math
import statistics
from collections import Counter
from pathlib import Path

import optuna
import optuna.distributions as od
import pytest

from sweep.spec.load import load_spec
from sweep.spec.spec import check_flags
from tests.helpers import ROOT
from text_recognizer.util import UserError

SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml")) + sorted((ROOT / "tests" / "spaces").glob("*.yaml"))
RUN = "run: {data_class: MNISTSample, max_epochs: 10}\n"
ACC = "metric: {name: val_acc, goal: maximize}\n"


def write(tmp_path: Path, text: str) -> str:
    """A sweep file of `text`, with `method: random` where it names no method (W&B requires one)."""
    path = tmp_path / "space.yaml"
    path.write_text(text if "method:" in text else f"method: random\n{text}")
    return str(path)


def spec_of(tmp_path: Path, text: str, run: str = RUN):
    return load_spec(write(tmp_path, run + text))


def error_of(tmp_path: Path, text: str, run: str = RUN) -> str:
    path = write(tmp_path, run + text)
    with pytest.raises(UserError) as error:
        load_spec(path)
    message = str(error.value)
    assert message.startswith(f"{path}: key '") and "\n" not in message
    return message


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_space_loads(path):
    spec = load_spec(str(path), cwd=str(ROOT))  # where their programs are
    assert spec.num_samples >= 1 and (spec.params or spec.method == "grid")


def test_wandb_file_keeps_its_meaning():
    spec = load_spec(str(ROOT / "search_spaces" / "wandb_style.yaml"), cwd=str(ROOT))
    assert spec.method == "random" and spec.num_samples == 6  # run_cap
    assert spec.early_stopping == {"grace_period": 1, "reduction_factor": 2.0}  # early_terminate: hyperband
    assert spec.base_config["data_class"] == "MNISTSample" and spec.max_epochs == 4  # `value:` parameters
    assert isinstance(spec.params["fc1"].distribution, od.IntDistribution)
    assert spec.params["lr"].distribution.log
    assert spec.params["batch_size"].value(100.0) == 128  # q_log_uniform_values, q=64, int flag
    assert spec.program is None  # its program is our trainer: trials run it in-process


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
        ("parameters: {}", "key 'parameters': give at least one parameter"),
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
    path = write(tmp_path, "parameters: {fc1: [1, 2}\nmethod: grid")
    with pytest.raises(UserError, match=r"not valid YAML at line 1"):
        load_spec(path)


def test_the_dashboard_line_warns_when_the_dashboard_is_reachable_from_other_machines():
    from types import SimpleNamespace

    from sweep.engine.cluster import dashboard_text

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
    spec = load_spec(write(tmp_path, "run: {accelerator: cpu}\nparameters: {fc1: {values: [8]}}"))
    with pytest.raises(UserError, match="cpu, with 0.5 GPU reserved per trial that would stay idle"):
        check_flags(spec, {"gpus_per_trial": 0.5})
    fine = load_spec(str(ROOT / "search_spaces" / "mlp.yaml"))  # one GPU per trial, accelerator auto
    assert check_flags(fine, {"gpus_per_trial": 0.25}).gpus_per_trial == 0.25
    with pytest.raises(UserError, match="--num-samples must be > 0, got 0"):
        check_flags(fine, {"num_samples": 0})


def draws(tmp_path: Path, flag: str, definition: str, n: int = 1000) -> list:
    """n values of one parameter, as a seeded random sweep would give its trials."""
    param = spec_of(tmp_path, f"method: random\nparameters: {{{flag}: {definition}}}").params[flag]
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    return [param.value(study.ask({flag: param.distribution}).params[flag]) for _ in range(n)]


def log_uniform_1e4_to_1e2(values) -> bool:
    """All in [1e-4, 1e-2] (to rounding of the bounds' logs), half of them below 1e-3."""
    median = statistics.median(math.log10(v) for v in values)
    return 9.99e-5 < min(values) and max(values) < 1.001e-2 and abs(median + 3) < 0.1


@pytest.mark.parametrize(
    "flag, definition, kind, check",
    [
        ("fc1", "{distribution: int_uniform, min: 16, max: 64}", int, lambda v: set(v) == set(range(16, 65))),
        ("fc1", "{min: 16, max: 64}", int, lambda v: set(v) == set(range(16, 65))),  # ints: int_uniform
        (
            "dropout",
            "{min: 0.1, max: 0.5}",
            float,
            lambda v: 0.1 <= min(v) and max(v) <= 0.5 and 0.28 < statistics.mean(v) < 0.32,
        ),
        (
            "dropout",
            "{distribution: uniform, min: 0, max: 0.5}",
            float,
            lambda v: max(v) <= 0.5 and 0.23 < statistics.mean(v) < 0.27,
        ),
        (
            "dropout",
            "{distribution: q_uniform, min: 0, max: 0.5, q: 0.1}",
            float,
            lambda v: set(v) == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5},
        ),
        ("fc1", "{distribution: q_uniform, min: 16, max: 64, q: 16}", int, lambda v: set(v) == {16, 32, 48, 64}),
        # log_uniform: min and max are natural logs of the bounds: lr in [1e-4, 1e-2], log-uniform.
        (
            "lr",
            "{distribution: log_uniform, min: -9.2103, max: -4.6052}",
            float,
            log_uniform_1e4_to_1e2,
        ),
        (
            "lr",
            "{distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}",
            float,
            log_uniform_1e4_to_1e2,
        ),
        (
            "fc1",
            "{distribution: q_log_uniform, min: 2.7726, max: 6.9315, q: 16}",
            int,
            lambda v: (
                all(x % 16 == 0 for x in v) and 16 <= min(v) and max(v) <= 1024 and 100 < statistics.median(v) < 160
            ),
        ),
        (
            "batch_size",
            "{distribution: q_log_uniform_values, min: 32, max: 512, q: 32}",
            int,
            lambda v: (
                all(x % 32 == 0 for x in v) and 32 <= min(v) and max(v) <= 512 and 96 <= statistics.median(v) <= 160
            ),
        ),
        # inv_log_uniform: log(1/X) uniform in [min, max] = [ln 100, ln 10000]: X log-uniform in [1e-4, 1e-2].
        (
            "lr",
            "{distribution: inv_log_uniform, min: 4.6052, max: 9.2103}",
            float,
            log_uniform_1e4_to_1e2,
        ),
        (
            "lr",
            "{distribution: inv_log_uniform_values, min: 1.0e-4, max: 1.0e-2}",
            float,
            log_uniform_1e4_to_1e2,
        ),
        (
            "dropout",
            "{distribution: normal, mu: 0.3, sigma: 0.05}",
            float,
            lambda v: abs(statistics.mean(v) - 0.3) < 0.01 and abs(statistics.stdev(v) - 0.05) < 0.005,
        ),
        (
            "fc1",
            "{distribution: q_normal, mu: 128, sigma: 16, q: 8}",
            int,
            lambda v: (
                all(x % 8 == 0 for x in v) and abs(statistics.mean(v) - 128) < 3 and 12 < statistics.stdev(v) < 20
            ),
        ),
        (
            "lr",
            "{distribution: log_normal, mu: -6.9078, sigma: 0.5}",
            float,
            lambda v: (
                min(v) > 0
                and abs(statistics.mean(math.log(x) for x in v) + 6.9078) < 0.05
                and abs(statistics.stdev(math.log(x) for x in v) - 0.5) < 0.05
            ),
        ),
        (
            "batch_size",
            "{distribution: q_log_normal, mu: 4.852, sigma: 0.3, q: 16}",
            int,
            lambda v: all(x % 16 == 0 for x in v) and 112 <= statistics.median(v) <= 144,
        ),
        (
            "optimizer",
            "{values: [Adam, SGD, AdamW], probabilities: [0.6, 0.3, 0.1]}",
            str,
            lambda v: all(
                abs(Counter(v)[k] / len(v) - p) < 0.04 for k, p in (("Adam", 0.6), ("SGD", 0.3), ("AdamW", 0.1))
            ),
        ),
        (
            "optimizer",
            "{distribution: categorical, values: [Adam, SGD]}",
            str,
            lambda v: set(v) == {"Adam", "SGD"} and 0.45 < Counter(v)["Adam"] / len(v) < 0.55,
        ),
    ],
)
def test_every_distribution_samples_in_range_with_the_right_type_and_scale(tmp_path, flag, definition, kind, check):
    values = draws(tmp_path, flag, definition)
    assert all(type(v) is kind for v in values), Counter(type(v) for v in values)
    assert check(values), (definition, sorted(values)[:: len(values) // 10])


def test_tpe_models_what_optuna_has_and_samples_quantiles_of_the_rest(tmp_path):
    spec = spec_of(
        tmp_path,
        "parameters:\n"
        "  lr: {distribution: inv_log_uniform_values, min: 1.0e-4, max: 1.0e-2}\n"
        "  fc1: {distribution: int_uniform, min: 16, max: 64}\n"
        "  dropout: {distribution: normal, mu: 0.3, sigma: 0.05}\n"
        "  optimizer: {values: [Adam, SGD], probabilities: [0.7, 0.3]}\n",
    )
    lr, fc1, dropout, optimizer = (spec.params[k] for k in ("lr", "fc1", "dropout", "optimizer"))
    assert isinstance(lr.distribution, optuna.distributions.FloatDistribution) and lr.distribution.log
    assert (lr.distribution.low, lr.distribution.high) == (1e-4, 1e-2)
    assert isinstance(fc1.distribution, optuna.distributions.IntDistribution) and fc1.from_quantile is None
    # Optuna has no normal and no weighted choice: it samples the quantile, which the parameter maps.
    assert (dropout.distribution.low, dropout.distribution.high) == (0.0, 1.0) and dropout.from_quantile
    assert dropout.value(0.5) == pytest.approx(0.3) and dropout.value(0.8413) == pytest.approx(0.35, abs=1e-3)
    assert [optimizer.value(u) for u in (0.0, 0.69, 0.71, 0.999)] == ["Adam", "Adam", "SGD", "SGD"]


def test_constants_and_inferred_values_are_fixed_settings(tmp_path):
    spec = spec_of(
        tmp_path,
        "parameters:\n  fc2: {distribution: constant, value: 48}\n  fc1: {value: 96}\n  lr: {values: [0.01]}\n",
    )
    assert (spec.base_config["fc2"], spec.base_config["fc1"]) == (48, 96) and list(spec.params) == ["lr"]


def test_grid_enumerates_int_and_q_uniform(tmp_path):
    spec = spec_of(
        tmp_path,
        "method: grid\nparameters:\n  fc1: {distribution: int_uniform, min: 8, max: 10}\n"
        "  dropout: {distribution: q_uniform, min: 0, max: 0.2, q: 0.1}\n"
        "  optimizer: {values: [Adam, SGD], probabilities: [0.9, 0.1]}\n",
    )
    assert spec.params["fc1"].distribution.choices == (8, 9, 10)
    assert spec.params["dropout"].distribution.choices == (0.0, 0.1, 0.2)
    assert spec.params["optimizer"].distribution.choices == ("Adam", "SGD")  # a grid tries every value
    assert spec.num_samples == 18


def test_a_draw_outside_the_flag_fails_that_trial_only(tmp_path):
    spec = spec_of(tmp_path, "parameters: {dropout: {distribution: normal, mu: 0.9, sigma: 0.2}}")
    assert spec.trial_config(spec.trial_values({"dropout": 0.5}))["dropout"] == pytest.approx(0.9)
    tail = spec.trial_values({"dropout": 0.9})  # the 90th percentile: 1.156, what Tune and results.csv record
    with pytest.raises(ValueError) as error:
        spec.trial_config(tail)
    assert str(error.value) == (
        "parameters.dropout: 1.15631031310892, drawn from normal(mu=0.9, sigma=0.2), "
        "is not a value of --dropout: expected between 0 and 1, got 1.15631031310892"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "parameters: {lr: {distribution: uniform, min: 0, max: 2, mu: 1}}",
            "'parameters.lr.mu': distribution uniform takes min and max, not 'mu'",
        ),
        (
            "parameters: {dropout: {distribution: uniform, min: 0, max: 1.5}}",
            "'parameters.dropout.max': --dropout takes values between 0 and 1, got 1.5",
        ),
        (
            "parameters: {lr: {distribution: uniform, min: -1, max: 1}}",
            "'parameters.lr.min': --lr takes values at least 0, got -1",
        ),
        ("parameters: {fc1: {distribution: int_uniform, min: 8.5, max: 16}}", "int_uniform needs whole numbers"),
        (
            "parameters: {fc1: {distribution: normal, mu: 64, sigma: 8}}",
            "--fc1 takes int: use q_normal (q: 1 rounds to integers)",
        ),
        (
            "parameters: {fc1: {distribution: log_uniform_values, min: 8, max: 64}}",
            "--fc1 takes int: use q_log_uniform_values",
        ),
        (
            "parameters: {fc1: {distribution: q_uniform, min: 8, max: 64, q: 0.5}}",
            "'parameters.fc1.q': --fc1 takes int: q must be a whole number",
        ),
        ("parameters: {lr: {distribution: normal, sigma: 0}}", "'parameters.lr.sigma': must be above 0"),
        (
            "parameters: {optimizer: {min: 1, max: 3}}",
            "'parameters.optimizer.distribution': --optimizer takes str: use values",
        ),
        ("parameters: {optimizer: {values: [Adam, SGD], probabilities: [0.5]}}", "expected a list of 2 numbers"),
        ("parameters: {optimizer: {values: [Adam, SGD], probabilities: [0.5, 0.6]}}", "must sum to 1, got 1.1"),
        (
            "parameters: {optimizer: {values: [Adam, Adamm]}}",
            "'parameters.optimizer.values': --optimizer takes str: expected one of",
        ),
        ("method: grid\nparameters: {lr: {distribution: normal}}", "method 'grid' enumerates values; normal has none"),
        ("parameters: {lr: {distribution: log_uniform_values, min: 0, max: 1}}", "needs min > 0"),
        ("parameters: {fc1: {distribution: constant}}", "'parameters.fc1.value': a constant needs 'value'"),
        (
            "parameters: {opt: {parameters: {lr: {values: [0.1]}}}}",
            "'parameters.opt.parameters': nested parameters have no flat flag",
        ),
        (
            "metric: {name: val_acc, target: high}\nparameters: {fc1: {values: [8]}}",
            "'metric.target': expected a number",
        ),
        (
            "early_terminate: {type: hyperband}\n" + ACC + "parameters: {fc1: {values: [8]}}",
            "give min_iter (the first bracket), or max_iter and s",
        ),
        (
            "early_terminate: {type: hyperband, max_iter: 9}\n" + ACC + "parameters: {fc1: {values: [8]}}",
            "'early_terminate.s': max_iter needs s",
        ),
        (
            "early_terminate: {type: hyperband, min_iter: 1, eta: 1}\n" + ACC + "parameters: {fc1: {values: [8]}}",
            "'early_terminate.eta': must be above 1",
        ),
        (
            "early_terminate: {type: hyperband, min_iter: 1, strict: yes please}\n"
            + ACC
            + "parameters: {fc1: {values: [8]}}",
            "'early_terminate.strict': expected true or false",
        ),
        (
            "early_terminate: {type: hyperband, min_iter: 1, brackets: 2}\n" + ACC + "parameters: {fc1: {values: [8]}}",
            "unknown key 'brackets'",
        ),
        (
            "early_stopping: {type: asha, grace_period: 11}\n" + ACC + "parameters: {fc1: {values: [8]}}",
            "'early_stopping.grace_period': must be at most max_epochs (10)",
        ),
    ],
)
def test_what_cannot_mean_anything_here_is_one_line_naming_the_key(tmp_path, text, message):
    assert message in error_of(tmp_path, text)


def test_goal_follows_the_metric_and_is_said_when_it_differs_from_wandb(tmp_path):
    loss = spec_of(tmp_path, "metric: {name: val_loss}\nparameters: {fc1: {values: [8]}}")
    assert (loss.metric, loss.mode, loss.target, loss.warnings) == ("val_loss", "min", None, [])
    acc = spec_of(tmp_path, "metric: {name: val_acc, target: 0.95}\nparameters: {fc1: {values: [8]}}")
    assert (acc.mode, acc.target) == ("max", 0.95)
    assert len(acc.warnings) == 1 and "W&B would minimize val_acc; this sweep maximizes it" in acc.warnings[0]
    explicit = spec_of(tmp_path, "metric: {name: val_acc, goal: minimize}\nparameters: {fc1: {values: [8]}}")
    assert (explicit.mode, explicit.warnings) == ("min", [])
    assert spec_of(tmp_path, "parameters: {fc1: {values: [8]}}").metric is None  # no metric: none, as in W&B


@pytest.mark.parametrize(
    "early, max_epochs, asha, note",
    [
        ("", 10, None, None),  # no early_terminate: no early stopping, as in W&B
        ("early_stopping: none", 10, None, None),
        ("early_stopping: {type: asha}", 10, {"grace_period": 1, "reduction_factor": 2.0}, None),
        (
            "early_terminate: {type: hyperband, min_iter: 1, strict: true}",
            10,
            {"grace_period": 1, "reduction_factor": 3.0},
            None,
        ),
        (
            "early_terminate: {type: hyperband, min_iter: 2, eta: 2}",
            10,
            {"grace_period": 2, "reduction_factor": 2.0},
            None,
        ),  # W&B's strict defaults to true: compare at the bracket, as ASHA does
        (
            "early_terminate: {type: hyperband, min_iter: 2, eta: 2, strict: false}",
            10,
            {"grace_period": 2, "reduction_factor": 2.0},
            "strict: false: W&B would compare a run's best val_acc so far",
        ),
        # W&B's documented example: max_iter 27, s 2, eta 3 gives brackets [9, 3].
        (
            "early_terminate: {type: hyperband, max_iter: 27, s: 2, strict: true}",
            30,
            {"grace_period": 3, "reduction_factor": 3.0, "horizon": 27},
            None,
        ),  # no rung at or past max_iter, as no bracket
        (
            "early_terminate: {type: hyperband, min_iter: 1, eta: 2.5, strict: true}",
            10,
            {"grace_period": 1, "reduction_factor": 2.5},
            "W&B would compare runs at epochs [1, 2, 6], ASHA compares them at [1, 3, 7]",
        ),
        (
            "early_terminate: {type: hyperband, min_iter: 3, s: 2, strict: true}",
            10,
            {"grace_period": 3, "reduction_factor": 3.0},
            "s is used with max_iter only",
        ),
        (
            "early_terminate: {type: hyperband, min_iter: 12, strict: true}",
            10,
            None,
            "every bracket is at or past max_epochs (10)",
        ),
    ],
)
def test_early_stopping_keeps_wandbs_meaning_and_says_what_differs(tmp_path, early, max_epochs, asha, note):
    spec = spec_of(
        tmp_path,
        f"{early}\nmetric: {{name: val_acc, goal: maximize}}\nparameters: {{fc1: {{values: [8]}}}}",
        run=f"run: {{max_epochs: {max_epochs}}}\n",
    )
    assert spec.early_stopping == asha
    notes = [w for w in spec.warnings if "early_terminate" in w]
    assert len(notes) == (note is not None) and all(note in w for w in notes)


def test_wandb_top_level_keys_are_reported_and_the_name_kept(tmp_path):
    spec = spec_of(
        tmp_path,
        "name: My MNIST sweep\nrun_cap: 5\nproject: p\nentity: e\ndescription: d\ncontroller: {type: local}\n"
        "parameters: {fc1: {values: [8]}}",
    )
    assert (spec.name, spec.num_samples) == ("My-MNIST-sweep", 5)
    for key in ("project", "entity", "description", "controller"):
        assert any(f"ignoring W&B key '{key}'" in w for w in spec.warnings)
    assert any("'My MNIST sweep' names directories and the study as 'My-MNIST-sweep'" in w for w in spec.warnings)


def test_values_keep_their_type_where_the_flag_takes_both(tmp_path):
    spec = spec_of(tmp_path, "parameters: {limit_train_batches: {values: [8, 0.5]}, lr: {values: [1, 0.1]}}")
    assert [spec.params["limit_train_batches"].value(v) for v in (8, 0.5)] == [8, 0.5]  # batches, a fraction
    config = spec.trial_config(spec.trial_values({"limit_train_batches": 8, "lr": 1}))
    assert type(config["limit_train_batches"]) is int
    assert type(spec.params["lr"].value(1)) is float


@pytest.mark.parametrize(
    "text, message",
    [
        ("parameters: {fc1: {values: [8]}}", "key 'method': required: choose one of bayes, random, grid"),
        ("method: bayes\nparameters: {fc1: {values: [8]}}", "key 'metric': method bayes learns from a metric"),
        ("method: random\nparameters: {1lr: {values: [8]}}", "key 'parameters.1lr': a parameter's name starts with"),
        (
            "method: grid\nearly_terminate: {type: hyperband, min_iter: 1}\nparameters: {fc1: {values: [8]}}",
            "key 'early_terminate': stops runs by their metric: give metric.name",
        ),
        ("method: grid\nmetric: {goal: maximize}\nparameters: {fc1: {values: [8]}}", "key 'metric.name': required"),
    ],
)
def test_what_wandb_refuses_is_refused_in_one_line(tmp_path, text, message):
    """W&B requires `method`, a metric for bayes and early termination, and parameter names of its pattern."""
    path = tmp_path / "space.yaml"
    path.write_text(RUN + text)
    with pytest.raises(UserError) as error:
        load_spec(str(path))
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_grids_and_random_searches_need_no_metric_and_a_grid_of_constants_is_one_trial(tmp_path):
    grid = spec_of(tmp_path, "method: grid\nparameters: {fc1: {values: [8, 16]}, lr: {values: [0.1, 0.01]}}")
    assert (grid.metric, grid.num_samples, grid.early_stopping) == (None, 4, None)
    constants = spec_of(tmp_path, "method: grid\nparameters: {fc1: {value: 8}, fc2: {value: 16}}")
    assert (constants.params, constants.num_samples) == ({}, 1)
    assert (constants.base_config["fc1"], constants.base_config["fc2"]) == (8, 16)
    assert spec_of(tmp_path, "method: random\nrun_cap: 3\nparameters: {fc1: {values: [8]}}").metric is None
