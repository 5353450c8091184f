"""The search-space YAML, parsed once into a `SweepSpec`; every error names the file and the key.

Parameters use the syntax of W&B Sweeps (`values`, `value`, `distribution` with `min`/`max`/`q`), and a
W&B sweep file's `method`, `metric`, `early_terminate` and `run_cap` keep their meaning. See the README
for every key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna.distributions as od

from text_recognizer.config import Flag, flag_schema, resolve_config, unknown_key_message
from text_recognizer.util import UserError, load_yaml_mapping

METHODS = {"bayes": "Optuna TPE", "random": "Optuna random sampling", "grid": "Optuna grid sampling"}
METRICS = ("val_acc", "val_loss")  # what every trial reports after each epoch
GOALS = {"maximize": "max", "minimize": "min"}
# Keys of a W&B sweep file that have no meaning here: reported at start, then ignored.
WANDB_IGNORED = {
    "program": "trials run text_recognizer's train(), not a program",
    "command": "trials run text_recognizer's train(), not a command",
    "project": "results go to the experiment directory",
    "entity": "results go to the experiment directory",
    "description": "kept nowhere",
}
DISTRIBUTIONS = ("uniform", "int_uniform", "log_uniform_values", "q_uniform", "q_log_uniform_values", "categorical")


@dataclass(frozen=True)
class Param:
    """One searched flag: an Optuna distribution, and `q` for W&B's q_log_uniform_values, which Optuna
    cannot sample with a step: the sampled value is rounded to a multiple of `q` before the trial runs."""

    name: str
    distribution: od.BaseDistribution
    q: float | None = None
    as_int: bool = False

    def to_flag_value(self, sampled: Any) -> Any:
        if self.q is not None:
            sampled = round(sampled / self.q) * self.q
        return int(round(sampled)) if self.as_int else sampled


@dataclass
class SweepSpec:
    """Built only by `load_spec`, which states every default once, where it reads each key."""

    path: str
    name: str
    base_config: dict  # a complete run config: every flag's default, overridden by the fixed settings
    params: dict[str, Param]
    metric: str
    mode: str
    method: str
    num_samples: int
    seed: int
    max_concurrent: int | None
    stopped_trials: str  # how trials that ASHA stopped are told to Optuna: pruned or completed
    asha: dict | None  # grace_period and reduction_factor, or None: no early stopping
    gpus_per_trial: float
    cpus_per_trial: float
    warnings: list[str]  # W&B keys reported and ignored

    @property
    def max_epochs(self) -> int:
        return self.base_config["max_epochs"]

    def trial_config(self, sampled: dict) -> dict:
        """The complete run config of one trial, from the searcher's sampled values."""
        return {**self.base_config, **{k: self.params[k].to_flag_value(v) for k, v in sampled.items()}}


class SpecReader:
    """Reads one YAML mapping, raising UserError('<file>: key '<path>': ...') for anything wrong."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, problem: str):
        raise UserError(f"{self.path}: key '{key}': {problem}")

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {value!r}")
        return value

    def number(self, value: Any, key: str, kind: type = float, minimum: float | None = None) -> Any:
        if isinstance(value, str) and kind is float:
            try:
                value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            ok = ok and float(value).is_integer()
        if not ok:
            self.fail(key, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value!r}")
        return kind(value)

    def check_keys(self, mapping: dict, key: str, allowed) -> None:
        for sub in mapping:
            if sub not in allowed:
                self.fail(f"{key}.{sub}" if key else sub, unknown_key_message(sub, allowed))


def load_spec(path: str) -> SweepSpec:
    raw = load_yaml_mapping(path)
    reader = SpecReader(path)
    top_keys = [
        "name",
        "metric",
        "method",
        "run",
        "parameters",
        "search",
        "early_stopping",
        "early_terminate",
        "resources",
        "run_cap",
        *WANDB_IGNORED,
    ]
    reader.check_keys(raw, "", top_keys)
    warnings = [f"{path}: ignoring W&B key '{k}' ({WANDB_IGNORED[k]})" for k in raw if k in WANDB_IGNORED]

    name = raw.get("name", Path(path).stem)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        reader.fail("name", f"expected letters, digits, '-' and '_' only, got {name!r}")

    metric, mode = _read_metric(reader, raw.get("metric", {"name": "val_acc", "goal": "maximize"}))
    method = raw.get("method", "bayes")
    if method not in METHODS:
        reader.fail("method", f"unknown method {method!r}: choose one of {', '.join(METHODS)}")

    # Fixed settings: the `run` mapping, plus W&B-style parameters with a single `value`.
    run = dict(reader.mapping(raw.get("run", {}), "run"))
    parameters = reader.mapping(raw.get("parameters", {}), "parameters")
    for pname, pdef in parameters.items():
        if isinstance(pdef, dict) and set(pdef) == {"value"}:
            if pname in run:
                reader.fail(f"parameters.{pname}", "also set under 'run': keep one")
            run[pname] = pdef["value"]
    base_config = resolve_config(run, f"{path}: run")
    schema = flag_schema(base_config["data_class"], base_config["model_class"])
    params = {}
    for pname, pdef in parameters.items():
        if pname in run:
            continue
        if pname not in schema:
            reader.fail(
                f"parameters.{pname}",
                "not a flag of training/run_experiment.py: "
                + unknown_key_message(pname, schema).replace("unknown key", "unknown flag"),
            )
        if pname in ("data_class", "model_class"):
            reader.fail(f"parameters.{pname}", "the data and model class are fixed per sweep; set them under 'run'")
        params[pname] = _read_param(reader, f"parameters.{pname}", pdef, schema[pname])
    if not params:
        reader.fail("parameters", "nothing to search: give at least one parameter with values or a distribution")

    search = reader.mapping(raw.get("search", {}), "search")
    reader.check_keys(search, "search", ["num_samples", "seed", "max_concurrent", "stopped_trials"])
    stopped_trials = search.get("stopped_trials", "pruned")
    if stopped_trials not in ("pruned", "completed"):
        reader.fail("search.stopped_trials", f"expected pruned or completed, got {stopped_trials!r}")
    if "run_cap" in raw and "num_samples" in search:
        reader.fail("run_cap", "also given as search.num_samples: keep one")
    grid_size = None
    if method == "grid":
        for pname, param in params.items():
            if not isinstance(param.distribution, od.CategoricalDistribution):
                reader.fail(f"parameters.{pname}", "method 'grid' needs a list of values for every parameter")
        grid_size = math.prod(len(param.distribution.choices) for param in params.values())
    num_samples = search.get("num_samples", raw.get("run_cap", grid_size or 8))
    num_samples = reader.number(num_samples, "search.num_samples", int, minimum=1)
    seed = reader.number(search.get("seed", 0), "search.seed", int)
    max_concurrent = search.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = reader.number(max_concurrent, "search.max_concurrent", int, minimum=1)

    asha = _read_early_stopping(reader, raw)
    resources = reader.mapping(raw.get("resources", {}), "resources")
    reader.check_keys(resources, "resources", ["gpus_per_trial", "cpus_per_trial"])
    gpus = reader.number(resources.get("gpus_per_trial", 0), "resources.gpus_per_trial", minimum=0)
    cpus = reader.number(resources.get("cpus_per_trial", 1), "resources.cpus_per_trial", minimum=0.01)
    return SweepSpec(
        path=str(path),
        name=name,
        base_config=base_config,
        params=params,
        metric=metric,
        mode=mode,
        method=method,
        num_samples=num_samples,
        seed=seed,
        max_concurrent=max_concurrent,
        stopped_trials=stopped_trials,
        asha=asha,
        gpus_per_trial=gpus,
        cpus_per_trial=cpus,
        warnings=warnings,
    )


def _read_metric(reader: SpecReader, metric: Any) -> tuple[str, str]:
    metric = reader.mapping(metric, "metric")
    reader.check_keys(metric, "metric", ["name", "goal"])
    name, goal = metric.get("name", "val_acc"), metric.get("goal", "maximize")
    if name not in METRICS:
        reader.fail("metric.name", f"trials report {' and '.join(METRICS)}, not {name!r}")
    if goal not in GOALS:
        reader.fail("metric.goal", f"expected maximize or minimize, got {goal!r}")
    return name, GOALS[goal]


def _read_early_stopping(reader: SpecReader, raw: dict) -> dict | None:
    """ASHA settings from `early_stopping` (ours) or `early_terminate` (W&B hyperband), or None."""
    if "early_stopping" in raw and "early_terminate" in raw:
        reader.fail("early_terminate", "also given as early_stopping: keep one")
    if "early_terminate" in raw:
        wandb = reader.mapping(raw["early_terminate"], "early_terminate")
        reader.check_keys(wandb, "early_terminate", ["type", "min_iter", "eta"])
        if wandb.get("type") != "hyperband":
            reader.fail("early_terminate.type", f"only 'hyperband' is understood, got {wandb.get('type')!r}")
        return {
            "grace_period": reader.number(wandb.get("min_iter", 1), "early_terminate.min_iter", int, minimum=1),
            "reduction_factor": reader.number(wandb.get("eta", 3), "early_terminate.eta", float, minimum=1.01),
        }
    early = raw.get("early_stopping", {"type": "asha"})
    if early in (None, "none"):
        return None
    early = reader.mapping(early, "early_stopping")
    reader.check_keys(early, "early_stopping", ["type", "grace_period", "reduction_factor"])
    if early.get("type", "asha") not in ("asha", "none"):
        reader.fail("early_stopping.type", f"expected asha or none, got {early.get('type')!r}")
    if early.get("type") == "none":
        return None
    return {
        "grace_period": reader.number(early.get("grace_period", 1), "early_stopping.grace_period", int, minimum=1),
        "reduction_factor": reader.number(
            early.get("reduction_factor", 2), "early_stopping.reduction_factor", float, minimum=1.01
        ),
    }


def _read_param(reader: SpecReader, key: str, pdef: Any, flag: Flag) -> Param:
    pdef = reader.mapping(pdef, key)
    reader.check_keys(pdef, key, ["values", "distribution", "min", "max", "q"])

    def checked(value, subkey):
        try:
            return flag.check(value)
        except ValueError as exc:
            reader.fail(f"{key}.{subkey}", f"--{flag.name} takes {flag.type_name}: {exc}")

    distribution = pdef.get("distribution", "categorical" if "values" in pdef else None)
    if distribution is None:
        reader.fail(key, "give 'values: [...]', 'value: x' or a 'distribution' with 'min' and 'max'")
    if distribution not in DISTRIBUTIONS:
        reader.fail(f"{key}.distribution", f"{distribution!r} is not supported: use one of {', '.join(DISTRIBUTIONS)}")
    if distribution == "categorical":
        values = pdef.get("values")
        if not isinstance(values, list) or not values:
            reader.fail(f"{key}.values", "expected a non-empty list")
        return Param(flag.name, od.CategoricalDistribution([checked(v, "values") for v in values]))

    for subkey in ("min", "max"):
        if subkey not in pdef:
            reader.fail(f"{key}.{subkey}", f"distribution {distribution} needs 'min' and 'max'")
    low, high = reader.number(pdef["min"], f"{key}.min"), reader.number(pdef["max"], f"{key}.max")
    if low >= high:
        reader.fail(key, f"min ({low}) must be below max ({high})")
    q = reader.number(pdef["q"], f"{key}.q", minimum=1e-12) if "q" in pdef else None
    if distribution.startswith("q_") and q is None:
        q = 1.0  # W&B's default
    is_int = int in flag.options
    if distribution == "int_uniform" or (is_int and distribution in ("q_uniform", "q_log_uniform_values")):
        if not is_int:
            reader.fail(f"{key}.distribution", f"--{flag.name} takes {flag.type_name}: use uniform, not int_uniform")
        low, high = checked(int(low), "min"), checked(int(high), "max")
        if distribution == "q_log_uniform_values":
            return Param(flag.name, od.FloatDistribution(low, high, log=True), q=q, as_int=True)
        step = int(q) if distribution == "q_uniform" else 1
        return Param(flag.name, od.IntDistribution(low, high, step=step))
    if float not in flag.options:
        reader.fail(f"{key}.distribution", f"--{flag.name} takes {flag.type_name}: use values or int_uniform")
    if distribution == "log_uniform_values" or distribution == "q_log_uniform_values":
        if low <= 0:
            reader.fail(f"{key}.min", f"{distribution} needs min > 0, got {low}")
        return Param(
            flag.name, od.FloatDistribution(low, high, log=True), q=q if distribution.startswith("q_") else None
        )
    if distribution == "q_uniform":
        return Param(flag.name, od.FloatDistribution(low, high, step=q))
    return Param(flag.name, od.FloatDistribution(low, high))
