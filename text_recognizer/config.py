"""The run configuration: one flat dict of flags, each a field of a config dataclass here, which states
its default once: the data module's, the model's, the lit model's and the trainer's. Their classes'
constructors take the same keyword arguments with these defaults (tests/test_config.py proves that they
agree). No torch here: a sweep's driver reads and checks a search space without importing it.

The command line, the sweep's YAML checks and `best_config.yaml` all read this schema.
"""

from __future__ import annotations

import difflib
import inspect
import types
from dataclasses import dataclass
from typing import Any, ClassVar, Union, get_args, get_origin

from text_recognizer.datasets import DATASETS
from text_recognizer.util import UserError

# torch.optim's optimizers, by class name (checked against torch itself by tests/test_config.py).
OPTIMIZERS = ("ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "Muon", "NAdam",
              "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam")  # fmt: skip


@dataclass
class DataConfig:
    """The data group's flags: BaseDataModule's arguments, the same for every dataset."""

    FLAG_BOUNDS: ClassVar[dict] = {"batch_size": (1, None), "num_workers": (0, None)}
    batch_size: int = 128
    num_workers: int = 0
    data_dir: str | None = None


@dataclass
class MLPConfig:
    """The model group's flags for the MLP. Bounds are checked when a config is read, and for each trial's
    sampled values (a normal draw can fall anywhere)."""

    FLAG_BOUNDS: ClassVar[dict] = {"fc1": (1, None), "fc2": (1, None), "dropout": (0, 1)}
    fc1: int = 1024
    fc2: int = 128
    dropout: float = 0.5


@dataclass
class LitModelConfig:
    """The lit model's flags (BaseLitModel): checked when a config or a search space is read, rather than
    when a trial first uses them."""

    FLAG_CHOICES: ClassVar[dict] = {"optimizer": OPTIMIZERS, "loss": ("cross_entropy", "multi_margin_loss", "nll_loss")}
    FLAG_BOUNDS: ClassVar[dict] = {"lr": (0, None), "one_cycle_max_lr": (0, None), "one_cycle_total_steps": (1, None)}
    optimizer: str = "Adam"
    lr: float = 1e-3
    loss: str = "cross_entropy"
    one_cycle_max_lr: float | None = None
    one_cycle_total_steps: int = 100


@dataclass
class TrainerConfig:
    """The trainer group's flags."""

    FLAG_BOUNDS: ClassVar[dict] = {"max_epochs": (1, None)}
    max_epochs: int = 5
    gpus: int | None = None
    accelerator: str = "auto"
    devices: int | str = "auto"
    precision: str = "32-true"
    fast_dev_run: bool = False
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    seed: int = 0
    output_dir: str = "training/logs"
    wandb: bool = False


DATA_CONFIGS = dict.fromkeys(DATASETS, DataConfig)  # every data class takes BaseDataModule's arguments
MODEL_CONFIGS = {"MLP": MLPConfig}  # text_recognizer.models.MODELS holds the classes


HELP = {
    "data_class": f"one of {', '.join(DATA_CONFIGS)}",
    "model_class": f"one of {', '.join(MODEL_CONFIGS)}",
    "batch_size": "images per batch",
    "num_workers": "kept for the seed's CLI; batches are sliced from memory without worker processes",
    "data_dir": "where MNIST's IDX files are (DATA_DIR/MNIST/raw); default $TEXT_RECOGNIZER_DATA_DIR "
    "or data/downloaded",
    "optimizer": "a class name in torch.optim",
    "lr": "learning rate",
    "loss": "a function name in torch.nn.functional",
    "one_cycle_max_lr": "use a one-cycle schedule peaking at this learning rate",
    "gpus": "train on N GPUs (same as --accelerator=gpu --devices=N); an error where there are none",
    "seed": "seeds torch, numpy and the batch order: same seed, same run",
    "output_dir": "where checkpoints and TensorBoard logs go",
    "limit_train_batches": "training batches per epoch: a fraction, or a number (rounded up to a multiple of 8)",
    "wandb": "also log to Weights & Biases (offline unless WANDB_MODE says otherwise; files under output_dir)",
}


@dataclass(frozen=True)
class Flag:
    name: str
    annotation: Any  # int, float, str, bool, or a union such as `float | None`
    default: Any
    group: str
    choices: tuple = ()  # the allowed values, where a class names them (FLAG_CHOICES)
    bounds: tuple = (None, None)  # the lowest and highest allowed value, where a class names them (FLAG_BOUNDS)

    @property
    def options(self) -> tuple:
        is_union = get_origin(self.annotation) in (Union, types.UnionType)
        return get_args(self.annotation) if is_union else (self.annotation,)

    @property
    def type_name(self) -> str:
        return " or ".join("null" if option is type(None) else option.__name__ for option in self.options)

    def from_string(self, raw: str) -> Any:
        """Parse a command-line value; argparse reports the ValueError."""
        for option in self.options:
            if option is type(None) and raw.lower() in ("none", "null"):
                return None
            if option is bool and raw.lower() in ("true", "false", "1", "0"):
                return raw.lower() in ("true", "1")
            if option in (int, float, str):
                try:
                    return option(raw)
                except ValueError:
                    continue
        raise ValueError(f"expected {self.type_name}, got {raw!r}")

    def check(self, value: Any) -> Any:
        """Check a value read from YAML; returns it, converted where the conversion is exact."""
        value = self.check_type(value)
        if self.choices and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(map(str, self.choices))}, got {value!r}")
        if value is not None and not isinstance(value, bool):
            self.check_bounds(value)
        return value

    @property
    def bounds_text(self) -> str:
        low, high = self.bounds
        return f"at least {low:g}" if high is None else f"between {low:g} and {high:g}"

    def check_bounds(self, value: float) -> None:
        low, high = self.bounds
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"expected {self.bounds_text}, got {value!r}")

    def check_type(self, value: Any) -> Any:
        if self.annotation is Any:  # a program's listed values: passed on as they are
            return value
        options = self.options
        if value is None and type(None) in options:
            return None
        if isinstance(value, bool):
            if bool in options:
                return value
        elif isinstance(value, int) and int in options:
            return value
        elif isinstance(value, (int, float)) and float in options:
            return float(value)
        elif isinstance(value, str):
            if str in options:
                return value
            if float in options:  # YAML 1.1 reads 1e-3 (no dot) as a string
                try:
                    return float(value)
                except ValueError:
                    pass
        raise ValueError(f"expected {self.type_name}, got {value!r}")


def signature_flags(target, group: str) -> dict[str, Flag]:
    """The keyword arguments of `target` (a config dataclass) that have defaults are its flags;
    `target.FLAG_CHOICES` may name the values a flag allows, `target.FLAG_BOUNDS` its lowest and highest
    value (None: no bound)."""
    params = inspect.signature(target, eval_str=True).parameters.values()
    choices = getattr(target, "FLAG_CHOICES", {})
    bounds = getattr(target, "FLAG_BOUNDS", {})
    return {
        p.name: Flag(
            p.name, p.annotation, p.default, group, tuple(choices.get(p.name, ())), bounds.get(p.name, (None, None))
        )
        for p in params
        if p.default is not inspect.Parameter.empty
    }


def flag_schema(data_class: str = "MNIST", model_class: str = "MLP") -> dict[str, Flag]:
    """Every flag of a run with these classes, in help order: data, model, lit model, trainer."""
    check_choice("data_class", data_class, DATA_CONFIGS)
    check_choice("model_class", model_class, MODEL_CONFIGS)
    schema = {
        "data_class": Flag("data_class", str, "MNIST", "experiment"),
        "model_class": Flag("model_class", str, "MLP", "experiment"),
    }
    for target, group in (
        (DATA_CONFIGS[data_class], "data"),
        (MODEL_CONFIGS[model_class], "model"),
        (LitModelConfig, "lit_model"),
        (TrainerConfig, "trainer"),
    ):
        for name, flag in signature_flags(target, group).items():
            assert name not in schema, f"flag --{name} is defined twice ({schema[name].group} and {group})"
            schema[name] = flag
    return schema


def check_choice(key: str, value: Any, choices: dict) -> None:
    if value not in choices:
        raise UserError(f"unknown {key} {value!r}: choose one of {', '.join(choices)}")


def unknown_key_message(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
    return f"unknown key '{key}' ({hint})"


def resolve_config(values: dict, where: str) -> dict:
    """A complete, type-checked run config: `values` over every flag's default.

    `where` names the source (a file, 'the command line') in error messages.
    """
    data_class = values.get("data_class", "MNIST")
    model_class = values.get("model_class", "MLP")
    try:
        schema = flag_schema(data_class, model_class)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    config = {name: flag.default for name, flag in schema.items()}
    for key, value in values.items():
        if key not in schema:
            raise UserError(f"{where}: {unknown_key_message(key, schema)}")
        try:
            config[key] = schema[key].check(value)
        except ValueError as exc:
            raise UserError(f"{where}: key '{key}': {exc}") from None
    return config


def group_kwargs(config: dict) -> dict[str, dict]:
    """Split a resolved config into keyword arguments per group ('data', 'model', 'lit_model', 'trainer')."""
    schema = flag_schema(config["data_class"], config["model_class"])
    groups: dict[str, dict] = {"data": {}, "model": {}, "lit_model": {}, "trainer": {}}
    for name, flag in schema.items():
        if flag.group in groups:
            groups[flag.group][name] = config[name]
    return groups
