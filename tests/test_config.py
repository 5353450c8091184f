"""Flags come from torch-free config dataclasses, which the classes' signatures agree with; the command
line, --config files and sweep YAMLs share one schema."""

import pytest
import torch
import yaml

from text_recognizer.config import flag_schema, resolve_config
from text_recognizer.models import MLP
from text_recognizer.util import UserError
from training.run_experiment import parse_config


def test_mlp_output_shape():
    model = MLP({"input_dims": (1, 28, 28), "output_dims": (10,)}, fc1=32, fc2=16)
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_schema_takes_defaults_from_signatures():
    schema = flag_schema("MNISTSample", "MLP")
    assert schema["fc1"].default == 1024 and schema["fc1"].group == "model"
    assert schema["lr"].default == 1e-3 and schema["lr"].group == "lit_model"
    assert schema["batch_size"].group == "data" and schema["max_epochs"].group == "trainer"
    assert "num_classes" not in schema and "data_config" not in schema


def test_the_classes_take_exactly_the_flags_of_their_config_dataclasses():
    """The schema a driver reads without torch is the classes' own: the same names, types and defaults."""
    import inspect

    from text_recognizer.config import DATA_CONFIGS, MODEL_CONFIGS, OPTIMIZERS, LitModelConfig
    from text_recognizer.data import DATA_CLASSES
    from text_recognizer.lit_models import BaseLitModel
    from text_recognizer.lit_models.base import optimizer_names
    from text_recognizer.models import MODELS

    def flags(target) -> dict:
        parameters = inspect.signature(target, eval_str=True).parameters.values()
        return {p.name: (p.annotation, p.default) for p in parameters if p.default is not inspect.Parameter.empty}

    pairs = [(DATA_CLASSES[name], DATA_CONFIGS[name]) for name in DATA_CLASSES]
    pairs += [(MODELS[name], MODEL_CONFIGS[name]) for name in MODELS] + [(BaseLitModel, LitModelConfig)]
    assert set(DATA_CLASSES) == set(DATA_CONFIGS) and set(MODELS) == set(MODEL_CONFIGS)
    for cls, config in pairs:
        assert flags(cls) == flags(config), cls.__name__
    assert list(OPTIMIZERS) == optimizer_names()  # torch.optim's, named without importing torch


def test_flags_are_parsed_into_the_config():
    config = parse_config(
        [
            "--data_class=MNISTSample",
            "--fc1=4",
            "--fc2=8",
            "--lr=0.01",
            "--batch_size=512",
            "--limit_train_batches=0.5",
            "--one_cycle_max_lr=None",
        ]
    )
    assert (config["fc1"], config["fc2"], config["lr"], config["batch_size"]) == (4, 8, 0.01, 512)
    assert config["limit_train_batches"] == 0.5 and config["one_cycle_max_lr"] is None
    assert config["max_epochs"] == 5  # untouched default


def test_config_file_is_overridden_by_flags(tmp_path):
    path = tmp_path / "best_config.yaml"
    path.write_text(yaml.safe_dump({"data_class": "MNISTSample", "fc1": 64, "lr": "3e-4"}))
    config = parse_config(["--config", str(path), "--fc2=16"])
    assert (config["data_class"], config["fc1"], config["fc2"], config["lr"]) == ("MNISTSample", 64, 16, 3e-4)
    assert parse_config(["--config", str(path), "--fc1=8"])["fc1"] == 8


@pytest.mark.parametrize(
    "values, message",
    [
        ({"fcc1": 1}, "unknown key 'fcc1' (did you mean 'fc1'?)"),
        ({"fc1": 1.5}, "key 'fc1': expected int, got 1.5"),
        ({"lr": "fast"}, "key 'lr': expected float, got 'fast'"),
        ({"data_class": "EMNIST"}, "unknown data_class 'EMNIST'"),
        ({"optimizer": "Adamm"}, "key 'optimizer': expected one of ASGD, Adadelta"),
    ],
)
def test_bad_config_values_name_the_source_and_key(values, message):
    with pytest.raises(UserError, match="^cfg.yaml: ") as error:
        resolve_config(values, "cfg.yaml")
    assert message in str(error.value)


def test_bad_flag_value_exits_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--fc1=abc"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--fc1: invalid int value: 'abc'" in err
