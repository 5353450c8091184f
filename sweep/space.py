"""The search-space YAML, parsed once into a `SweepSpec`; every error names the file and the key.

Parameters use the syntax of W&B Sweeps (`values`, `value`, `distribution` with `min`/`max`/`q`), and a
W&B sweep file's `method`, `metric`, `early_terminate` and `run_cap` keep their meaning. See the README
for every key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.params import Param, read_param
from text_recognizer.config import flag_schema, resolve_config, unknown_key_message
from text_recognizer.util import UserError, load_yaml_mapping

METHODS = {"bayes": "Optuna TPE", "random": "Optuna random sampling", "grid": "Optuna grid sampling"}
METRICS = ("val_acc", "val_loss")  # what every trial reports after each epoch
GOALS = {"maximize": "max", "minimize": "min"}
NATURAL_GOAL = {"val_acc": "maximize", "val_loss": "minimize"}  # when a file gives no goal
# Keys of a W&B sweep file that have no meaning here: reported at start, then ignored.
WANDB_IGNORED = {
    "program": "trials run text_recognizer's train(), not a program",
    "command": "trials call text_recognizer's train() with the parameters as flags, which is what "
    "${args} would pass; ${env}, ${program}, ${args_no_hyphens} and the rest have nothing to expand",
    "project": "results go to the experiment directory",
    "entity": "results go to the experiment directory",
    "description": "kept nowhere",
}
HYPERBAND_KEYS = ["type", "min_iter", "max_iter", "s", "eta", "strict"]


@dataclass
class SweepSpec:
    """Built only by `load_spec`, which states every default once, where it reads each key."""

    path: str
    name: str
    base_config: dict  # a complete run config: every flag's default, overridden by the fixed settings
    params: dict[str, Param]
    metric: str
    mode: str
    target: float | None  # once a trial reaches it, no new trial starts (W&B's metric.target)
    method: str
    num_samples: int
    seed: int
    max_concurrent: int | None
    stopped_trials: str  # how trials that ASHA stopped are told to Optuna: pruned or completed
    asha: dict | None  # grace_period and reduction_factor, or None: no early stopping
    gpus_per_trial: float
    cpus_per_trial: float
    warnings: list[str]  # W&B keys reported and ignored, meanings that differ from W&B's
    checkpoint_interval_s: float = 60.0  # a trial saves a checkpoint at most this often (0: every epoch)
    max_failures: int = 2  # retries of a trial whose worker or node was lost

    @property
    def max_epochs(self) -> int:
        return self.base_config["max_epochs"]

    @property
    def target_text(self) -> str:
        """'val_acc >= 0.95', or '' without a target."""
        if self.target is None:
            return ""
        return f"{self.metric} {'>=' if self.mode == 'max' else '<='} {self.target:g}"

    def reached_target(self, value: float) -> bool:
        return self.target is not None and (value >= self.target if self.mode == "max" else value <= self.target)

    def trial_values(self, sampled: dict) -> dict:
        """The searched flags' values of one trial, from Optuna's samples: what Tune's config holds."""
        return {k: self.params[k].value(v) for k, v in sampled.items()}

    def trial_config(self, values: dict) -> dict:
        """The complete run config of one trial; a value the flag does not accept raises ValueError."""
        return {**self.base_config, **{k: self.params[k].check(v) for k, v in values.items()}}


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


def is_constant(pdef: Any) -> bool:
    """W&B's `value: x` (optionally with `distribution: constant`): a fixed setting, not a searched one."""
    return (
        isinstance(pdef, dict)
        and "value" in pdef
        and set(pdef) <= {"value", "distribution"}
        and (pdef.get("distribution", "constant") == "constant")
    )


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
    if not isinstance(name, str) or not name.strip():
        reader.fail("name", f"expected a string, got {name!r}")
    # W&B's name is a title shown in its UI; here it also names the experiment directory and the study.
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")
    if not slug:
        reader.fail("name", f"needs at least one letter or digit, got {name!r}")
    if slug != name:
        warnings.append(f"{path}: key 'name': {name!r} names directories and the study as {slug!r}")

    method = raw.get("method", "bayes")
    if method not in METHODS:
        reader.fail("method", f"unknown method {method!r}: choose one of {', '.join(METHODS)}")

    # Fixed settings: the `run` mapping, plus W&B-style parameters with a single `value`.
    run = dict(reader.mapping(raw.get("run", {}), "run"))
    parameters = reader.mapping(raw.get("parameters", {}), "parameters")
    for pname, pdef in parameters.items():
        if is_constant(pdef):
            if pname in run:
                reader.fail(f"parameters.{pname}", "also set under 'run': keep one")
            run[pname] = pdef["value"]
    base_config = resolve_config(run, f"{path}: run")
    schema = flag_schema(base_config["data_class"], base_config["model_class"])
    params = {}
    for pname, pdef in parameters.items():
        if is_constant(pdef):
            continue
        key = f"parameters.{pname}"
        if pname in run:
            reader.fail(key, "also set under 'run': keep one")
        if isinstance(pdef, dict) and "parameters" in pdef:
            reader.fail(
                f"{key}.parameters",
                "nested parameters have no flat flag of training/run_experiment.py to go to: "
                "write each nested parameter as a parameter of its own under 'parameters'",
            )
        if pname not in schema:
            reader.fail(
                key,
                "not a flag of training/run_experiment.py: "
                + unknown_key_message(pname, schema).replace("unknown key", "unknown flag"),
            )
        if pname in ("data_class", "model_class"):
            reader.fail(key, "the data and model class are fixed per sweep; set them under 'run'")
        params[pname] = read_param(reader, key, reader.mapping(pdef, key), schema[pname], method)
    if not params:
        reader.fail("parameters", "nothing to search: give at least one parameter with values or a distribution")

    metric, mode, target = _read_metric(reader, raw, warnings)
    search = reader.mapping(raw.get("search", {}), "search")
    reader.check_keys(search, "search", ["num_samples", "seed", "max_concurrent", "stopped_trials"])
    stopped_trials = search.get("stopped_trials", "pruned")
    if stopped_trials not in ("pruned", "completed"):
        reader.fail("search.stopped_trials", f"expected pruned or completed, got {stopped_trials!r}")
    if "run_cap" in raw and "num_samples" in search:
        reader.fail("run_cap", "also given as search.num_samples: keep one")
    grid_size = None
    if method == "grid":
        grid_size = math.prod(len(param.distribution.choices) for param in params.values())
    num_samples = search.get("num_samples", raw.get("run_cap", grid_size or 8))
    num_key = "search.num_samples" if "num_samples" in search else "run_cap"
    num_samples = reader.number(num_samples, num_key, int, minimum=1)
    seed = reader.number(search.get("seed", 0), "search.seed", int)
    max_concurrent = search.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = reader.number(max_concurrent, "search.max_concurrent", int, minimum=1)

    asha = _read_early_stopping(reader, raw, base_config["max_epochs"], metric, warnings)
    resources = reader.mapping(raw.get("resources", {}), "resources")
    reader.check_keys(resources, "resources", ["gpus_per_trial", "cpus_per_trial"])
    gpus = reader.number(resources.get("gpus_per_trial", 0), "resources.gpus_per_trial", minimum=0)
    cpus = reader.number(resources.get("cpus_per_trial", 1), "resources.cpus_per_trial", minimum=0.01)
    return SweepSpec(
        path=str(path),
        name=slug,
        base_config=base_config,
        params=params,
        metric=metric,
        mode=mode,
        target=target,
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


def _read_metric(reader: SpecReader, raw: dict, warnings: list[str]) -> tuple[str, str, float | None]:
    """(metric, mode, target). Without a goal the goal follows the metric; W&B's default is minimize."""
    metric = reader.mapping(raw.get("metric", {}), "metric")
    reader.check_keys(metric, "metric", ["name", "goal", "target"])
    name = metric.get("name", "val_acc")
    if name not in METRICS:
        reader.fail("metric.name", f"trials report {' and '.join(METRICS)}, not {name!r}")
    goal = metric.get("goal")
    if goal is None:
        goal = NATURAL_GOAL[name]
        if "metric" in raw and goal == "maximize":
            warnings.append(
                f"{reader.path}: key 'metric.goal' not given: W&B would minimize {name}; "
                f"this sweep maximizes it (write goal: maximize to say so)"
            )
    if goal not in GOALS:
        reader.fail("metric.goal", f"expected maximize or minimize, got {goal!r}")
    target = metric.get("target")
    if target is not None:
        target = reader.number(target, "metric.target")
    return name, GOALS[goal], target


def rung_epochs(grace_period: int, reduction_factor: float, max_epochs: int) -> list[int]:
    """The epochs before the last at which Ray's ASHA compares a trial: grace_period * reduction_factor^k,
    reached at the first whole epoch at or past it."""
    epochs, milestone = set(), float(grace_period)
    while milestone < max_epochs:
        epochs.add(math.ceil(milestone - 1e-9))
        milestone *= reduction_factor
    return sorted(e for e in epochs if e < max_epochs)


def _read_early_stopping(
    reader: SpecReader, raw: dict, max_epochs: int, metric: str, warnings: list[str]
) -> dict | None:
    """ASHA settings from `early_stopping` (ours) or `early_terminate` (W&B hyperband), or None.
    Neither key means no early stopping, as in W&B."""
    if "early_stopping" in raw and "early_terminate" in raw:
        reader.fail("early_terminate", "also given as early_stopping: keep one")
    if "early_terminate" in raw:
        return _read_hyperband(
            reader, reader.mapping(raw["early_terminate"], "early_terminate"), max_epochs, metric, warnings
        )
    early = raw.get("early_stopping", "none")
    if early in (None, "none"):
        return None
    early = reader.mapping(early, "early_stopping")
    reader.check_keys(early, "early_stopping", ["type", "grace_period", "reduction_factor"])
    if early.get("type", "asha") not in ("asha", "none"):
        reader.fail("early_stopping.type", f"expected asha or none, got {early.get('type')!r}")
    if early.get("type") == "none":
        return None
    grace_period = reader.number(early.get("grace_period", 1), "early_stopping.grace_period", int, minimum=1)
    if grace_period > max_epochs:
        reader.fail(
            "early_stopping.grace_period",
            f"must be at most max_epochs ({max_epochs}) to stop anything, got {grace_period}",
        )
    return {
        "grace_period": grace_period,
        "reduction_factor": reader.number(
            early.get("reduction_factor", 2), "early_stopping.reduction_factor", float, minimum=1.01
        ),
    }


def _read_hyperband(reader: SpecReader, wandb: dict, max_epochs: int, metric: str, warnings: list[str]) -> dict | None:
    """W&B's hyperband stopping as Ray's ASHA: W&B's brackets are the epochs at which a run is compared
    with the others and stopped unless it is in the top 1/eta; ASHA's rungs are the same idea."""
    reader.check_keys(wandb, "early_terminate", HYPERBAND_KEYS)
    if wandb.get("type") != "hyperband":
        reader.fail("early_terminate.type", f"only 'hyperband' is understood, got {wandb.get('type')!r}")
    eta = reader.number(wandb.get("eta", 3), "early_terminate.eta")  # W&B's default eta is 3
    if eta <= 1:
        reader.fail("early_terminate.eta", f"must be above 1, got {eta:g}")
    strict = wandb.get("strict", False)
    if not isinstance(strict, bool):
        reader.fail("early_terminate.strict", f"expected true or false, got {strict!r}")
    notes = []
    if "max_iter" in wandb:  # W&B: brackets at max_iter/eta, max_iter/eta^2, ... (s of them, at least 1)
        max_iter = reader.number(wandb["max_iter"], "early_terminate.max_iter", int, minimum=1)
        if "s" not in wandb:
            reader.fail("early_terminate.s", "max_iter needs s, the number of brackets below it (as in W&B)")
        s = reader.number(wandb["s"], "early_terminate.s", int, minimum=1)
        bands = [int(max_iter / eta**i) for i in range(1, s + 1) if max_iter / eta**i >= 1]
        if not bands:
            reader.fail("early_terminate", f"max_iter {max_iter} / eta {eta:g} is below 1: no bracket; raise max_iter")
        if "min_iter" in wandb:
            notes.append("min_iter is ignored when max_iter is given, as in W&B")
    elif "min_iter" in wandb:  # W&B: brackets at min_iter, min_iter*eta, min_iter*eta^2, ...
        min_iter = reader.number(wandb["min_iter"], "early_terminate.min_iter", int, minimum=1)
        bands, band = [], float(min_iter)
        while band < max_epochs:
            bands.append(int(band))
            band *= eta
        if "s" in wandb:
            notes.append("s is used with max_iter only, as in W&B")
    else:
        reader.fail("early_terminate", "give min_iter (the first bracket), or max_iter and s, as W&B requires")
    wandb_epochs = sorted({band for band in bands if band < max_epochs})
    where = f"{reader.path}: key 'early_terminate'"
    if not wandb_epochs:
        warnings.append(f"{where}: every bracket is at or past max_epochs ({max_epochs}): no trial is stopped early")
        return None
    grace_period = wandb_epochs[0]
    asha_epochs = rung_epochs(grace_period, eta, max_epochs)
    if asha_epochs != wandb_epochs:
        notes.append(f"W&B would compare runs at epochs {wandb_epochs}, ASHA compares them at {asha_epochs}")
    if not strict:
        notes.append(
            f"W&B's default (strict: false) compares a run's best {metric} so far; ASHA compares its {metric} "
            "at that epoch, as strict: true does"
        )
    if notes:
        warnings.append(f"{where}: " + "; ".join(notes))
    return {"grace_period": grace_period, "reduction_factor": eta}
