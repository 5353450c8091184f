"""A sweep file, read once into a `SweepSpec`; every problem is one line naming the file and the key.

Parameters use the syntax of W&B Sweeps (`values`, `value`, `distribution` with `min`/`max`/`q`), and a
W&B sweep file's `method`, `metric`, `early_terminate`, `run_cap`, `program` and `command` keep their
meaning. docs/sweep-file.md describes every key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

from sweep.spec.command import DEFAULT_COMMAND, IN_PROCESS_MACROS, MACROS, Program, unknown_macro
from sweep.spec.params import read_param
from sweep.spec.reader import SpecReader
from sweep.spec.spec import TRAINER_METRICS, SweepSpec, check_resources, grid_size, milestones
from text_recognizer.config import flag_schema, resolve_config, unknown_key_message
from text_recognizer.util import load_yaml_mapping

METHODS = {"bayes": "Optuna TPE", "random": "Optuna random sampling", "grid": "every combination, as W&B"}
GOALS = {"maximize": "max", "minimize": "min"}
NATURAL_GOAL = {"val_acc": "maximize", "val_loss": "minimize"}  # when a file gives no goal (W&B: minimize)
# Keys of a W&B sweep file that have no meaning here: reported at start, then ignored.
WANDB_IGNORED = {
    "project": "results go to the experiment directory",
    "entity": "results go to the experiment directory",
    "description": "kept nowhere",
    "controller": "Ray Tune is the controller",
}
# Keys of W&B's that ask for what only W&B's servers do: refused, with what to write instead.
WANDB_REFUSED = {
    "job": "a W&B Launch job runs on W&B's launch queues; name the script to run with 'program' (and 'command')",
    "image_uri": "a W&B Launch image runs on W&B's launch queues; name the script to run with 'program'",
}
HYPERBAND_KEYS = ["type", "min_iter", "max_iter", "s", "eta", "strict"]
TRAINER = Path(__file__).resolve().parents[2] / "training" / "run_experiment.py"  # our trainer, run in-process
INTERPRETERS = {"${env}", "/usr/bin/env", "env", "${interpreter}", "python", "python3"}
# Of the driver's environment, what a program trial gets wherever it runs (W&B's own settings).
# (Not WANDB_API_KEY: W&B reads it from ~/.netrc or the environment of each node, and it is no setting.)
PASSED_ON = ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL", "WANDB_TAGS")
PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # W&B's schema for parameter names


def is_constant(pdef: Any) -> bool:
    """W&B's `value: x` (optionally with `distribution: constant`): a fixed setting, not a searched one."""
    return (
        isinstance(pdef, dict)
        and "value" in pdef
        and set(pdef) <= {"value", "distribution"}
        and (pdef.get("distribution", "constant") == "constant")
    )


def flat_parameters(reader: SpecReader, parameters: dict, key: str = "parameters", path: tuple = ()) -> list:
    """[(name, path, key, definition)] of every parameter, those of nested `parameters` blocks included
    (named 'outer.inner', their path ('outer', 'inner'), their key 'parameters.outer.parameters.inner')."""
    found = []
    for name, pdef in reader.mapping(parameters, key).items():
        name_key = f"{key}.{name}"
        if not isinstance(name, str) or not PARAMETER_NAME.fullmatch(name):
            reader.fail(name_key, "a parameter's name starts with a letter or _, then letters, digits, _ . or - "
                        "(as W&B requires)")  # fmt: skip
        if isinstance(pdef, dict) and "parameters" in pdef:
            reader.check_keys(pdef, name_key, ["parameters"])
            found += flat_parameters(reader, pdef["parameters"], f"{name_key}.parameters", (*path, str(name)))
        else:
            found.append((".".join((*path, str(name))), (*path, str(name)), name_key, pdef))
    names = [name for name, *_ in found]
    for name, _, name_key, _ in found:
        if names.count(name) > 1:
            reader.fail(name_key, f"'{name}' is also the name of a nested parameter: rename one")
    return found


def load_spec(path: str, cwd: str | None = None) -> SweepSpec:
    """`cwd`: where the sweep's program and its relative paths are (default: the current directory)."""
    warnings: list[str] = []
    raw = load_yaml_mapping(path, warnings)
    reader = SpecReader(path)
    for key, fix in WANDB_REFUSED.items():
        if key in raw:
            reader.fail(key, fix)
    top_keys = ["name", "metric", "method", "run", "parameters", "search", "early_stopping", "early_terminate",
                "resources", "run_cap", "program", "command", *WANDB_IGNORED]  # fmt: skip
    reader.check_keys(raw, "", top_keys)
    warnings += [f"{path}: ignoring W&B key '{k}' ({WANDB_IGNORED[k]})" for k in raw if k in WANDB_IGNORED]

    name = raw.get("name", Path(path).stem)
    if not isinstance(name, str) or not name.strip():
        reader.fail("name", f"expected a string, got {name!r}")
    # W&B's name is a title shown in its UI; here it also names the experiment directory and the study.
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")
    if not slug:
        reader.fail("name", f"needs at least one letter or digit, got {name!r}")
    if slug != name:
        warnings.append(f"{path}: key 'name': {name!r} names directories and the study as {slug!r}")

    if "method" not in raw:  # W&B's one required key
        reader.fail("method", f"required: choose one of {', '.join(METHODS)} (bayes: {METHODS['bayes']})")
    method = raw["method"]
    if method not in METHODS:
        reader.fail("method", f"unknown method {method!r}: choose one of {', '.join(METHODS)}")

    if not raw.get("parameters"):
        reader.fail("parameters", "give at least one parameter: with values, a distribution, or a single value")
    parameters = flat_parameters(reader, raw["parameters"])
    program, flags = read_program(reader, raw, cwd or os.getcwd())
    if program is None:
        base_config, params = _trainer_params(reader, raw, parameters, flags, method)
    else:
        base_config, params, program = {}, *_program_params(reader, raw, parameters, program, method)
    metric, mode, target = _read_metric(reader, raw, program is not None, warnings)
    if metric is None and method == "bayes":
        reader.fail("metric", "method bayes learns from a metric: give metric.name (grid and random need none)")
    search = reader.mapping(raw.get("search", {}), "search")
    reader.check_keys(search, "search", ["num_samples", "seed", "max_concurrent", "stopped_trials"])
    stopped_trials = search.get("stopped_trials", "pruned")
    if stopped_trials not in ("pruned", "completed"):
        reader.fail("search.stopped_trials", f"expected pruned or completed, got {stopped_trials!r}")
    if "run_cap" in raw and "num_samples" in search:
        reader.fail("run_cap", "also given as search.num_samples: keep one")
    points = None
    if method == "grid":  # a grid of constants only is one trial, as in W&B
        points = grid_size(params)
    num_samples = search.get("num_samples", raw.get("run_cap", points or 8))
    num_key = "search.num_samples" if "num_samples" in search else "run_cap"
    num_samples = reader.number(num_samples, num_key, int, minimum=1)
    if points is not None and num_samples > points:  # W&B's grid ends once each point has run
        warnings.append(f"{path}: key '{num_key}': {num_samples} is above the grid's {points} points: "
                        f"{points} trials, each point once, as in W&B")  # fmt: skip
        num_samples = points
    seed = reader.number(search.get("seed", 0), "search.seed", int)
    max_concurrent = search.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = reader.number(max_concurrent, "search.max_concurrent", int, minimum=1)

    early_stopping = _read_early_stopping(reader, raw, base_config.get("max_epochs"), metric, warnings)
    resources = reader.mapping(raw.get("resources", {}), "resources")
    reader.check_keys(resources, "resources", ["gpus_per_trial", "cpus_per_trial"])
    gpus = reader.number(resources.get("gpus_per_trial", 0), "resources.gpus_per_trial", minimum=0)
    cpus = reader.number(resources.get("cpus_per_trial", 1), "resources.cpus_per_trial", minimum=0.01)
    spec = SweepSpec(
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
        early_stopping=early_stopping,
        gpus_per_trial=gpus,
        cpus_per_trial=cpus,
        warnings=warnings,
        program=program,
    )
    check_resources(spec)
    return spec


def read_program(reader: SpecReader, raw: dict, cwd: str) -> tuple[Program | None, list[str]]:
    """(the program each trial runs, []), or (None, flags) where trials run our trainer in-process: a file
    without `program` and `command`, or whose command runs training/run_experiment.py with Python and
    arguments that are its flags (`flags`: the command's literal ones, such as --wandb)."""
    if "program" not in raw and "command" not in raw:
        return None, []
    program = raw.get("program")
    if program is not None and (not isinstance(program, str) or not program.strip()):
        reader.fail("program", f"expected the path of a script, got {program!r}")
    command = raw.get("command", list(DEFAULT_COMMAND))
    if not isinstance(command, list) or not command or not all(isinstance(c, (str, int, float)) for c in command):
        reader.fail("command", "expected a list of strings, e.g. [${env}, ${interpreter}, ${program}, ${args}]")
    command = [str(c) for c in command]
    for chunk in command:
        if unknown_macro(chunk):
            reader.fail("command", f"{unknown_macro(chunk)} is no macro of W&B's agent: use one of "
                        + ", ".join(f"${{{m}}}" for m in MACROS))  # fmt: skip
    if "${program}" in command:
        if program is None:
            reader.fail("command", "${program} needs 'program': the script to run")
        if not (Path(cwd) / program).is_file():
            reader.fail("program", f"{program} is not a file in {cwd}, where trials run the command")
    flags = trainer_flags(command, program, cwd)
    if flags is not None:
        return None, flags
    environ = {key: os.environ[key] for key in PASSED_ON if key in os.environ}
    return Program(path=program, command=tuple(command), cwd=cwd, environ=environ), []


def trainer_flags(command: list[str], program: str | None, cwd: str) -> list[str] | None:
    """The literal arguments of a command that runs our trainer with Python and argument macros that it
    parses, or None for any other command."""
    rest = list(command)
    while rest and rest[0] in INTERPRETERS:
        rest.pop(0)
    script = program if rest and rest[0] == "${program}" else (rest[0] if rest else None)
    if script is None or not (Path(cwd) / script).resolve() == TRAINER:
        return None
    if any(c.startswith("${") and c not in IN_PROCESS_MACROS for c in rest[1:]):
        return None
    return [c for c in rest[1:] if not c.startswith("${")]


def literal_flags(reader: SpecReader, literals: list[str], schema: dict) -> dict:
    """`--name=value`, `--name value` and a bare `--name` (true) of a command, as our trainer reads them."""
    values, i = {}, 0
    while i < len(literals):
        name, equals, text = literals[i].removeprefix("--").partition("=")
        if not literals[i].startswith("--") or name not in schema:
            reader.fail("command", f"{literals[i]!r} is no flag of training/run_experiment.py (see its --help)")
        if not equals:
            bare = i + 1 == len(literals) or literals[i + 1].startswith("--")
            if bare and bool not in schema[name].options:
                reader.fail("command", f"--{name} needs a value")
            text = "true" if bare else literals[i + 1]
            i += 0 if bare else 1
        try:
            values[name] = schema[name].from_string(text)
        except ValueError as exc:
            reader.fail("command", f"--{name}: {exc}")
        i += 1
    return values


def _trainer_params(reader: SpecReader, raw: dict, parameters: list, literals: list[str], method: str):
    """(base_config, params) of a sweep of our trainer: every parameter is a flag of run_experiment.py."""
    # Fixed settings: the `run` mapping, the command's literal flags, and parameters with a single `value`.
    run = dict(reader.mapping(raw.get("run", {}), "run"))
    for name, path, key, pdef in parameters:
        if len(path) > 1:
            reader.fail(
                f"{key.rsplit('.parameters.', 1)[0]}.parameters",
                "nested parameters have no flat flag of training/run_experiment.py to go to: "
                "write each nested parameter as a parameter of its own under 'parameters'",
            )
        if is_constant(pdef):
            if name in run:
                reader.fail(key, "also set under 'run': keep one")
            run[name] = pdef["value"]
    schema = flag_schema(run.get("data_class", "MNIST"), run.get("model_class", "MLP"))
    for name, value in literal_flags(reader, literals, schema).items():
        run.setdefault(name, value)
    base_config = resolve_config(run, f"{reader.path}: run")
    schema = flag_schema(base_config["data_class"], base_config["model_class"])
    params = {}
    for name, _, key, pdef in parameters:
        if is_constant(pdef):
            continue
        if name in run:
            reader.fail(key, "also set under 'run': keep one")
        if name not in schema:
            reader.fail(
                key,
                "not a flag of training/run_experiment.py: "
                + unknown_key_message(name, schema).replace("unknown key", "unknown flag"),
            )
        if name in ("data_class", "model_class"):
            reader.fail(key, "the data and model class are fixed per sweep; set them under 'run'")
        params[name] = read_param(reader, key, reader.mapping(pdef, key), schema[name], method)
    return base_config, params


def _program_params(reader: SpecReader, raw: dict, parameters: list, program: Program, method: str):
    """(params, program with its constants) of a sweep of a program: any names, passed on as W&B passes them."""
    if "run" in raw:
        reader.fail("run", "sets flags of training/run_experiment.py; a program's fixed values are parameters "
                    "with 'value: ...'")  # fmt: skip
    fixed, params = {}, {}
    for name, _, key, pdef in parameters:
        if is_constant(pdef):
            fixed[name] = pdef["value"]
        else:
            params[name] = read_param(reader, key, reader.mapping(pdef, key), None, method, name)
    nested = {name: path for name, path, _, _ in parameters if len(path) > 1}
    return params, dataclasses.replace(program, fixed=fixed, nested=nested)


def _read_metric(reader: SpecReader, raw: dict, of_program: bool, warnings: list[str]):
    """(metric, mode, target); (None, 'min', None) for a file without `metric` (grid and random need none).
    Without a goal the goal follows the metric (val_acc: maximize); W&B's default is minimize."""
    if "metric" not in raw:
        return None, "min", None
    metric = reader.mapping(raw["metric"], "metric")
    reader.check_keys(metric, "metric", ["name", "goal", "target"])
    if "name" not in metric:
        what = "the program logs (with wandb.log or its summary, or name=value on stdout)" if of_program else "to use"
        reader.fail("metric.name", f"required in 'metric': name the metric {what}")
    name = metric["name"]
    if not isinstance(name, str) or not name.strip():
        reader.fail("metric.name", f"expected the name of a logged value, got {name!r}")
    if not of_program and name not in TRAINER_METRICS:
        reader.fail("metric.name", f"trials report {' and '.join(TRAINER_METRICS)}, not {name!r}")
    goal = metric.get("goal")
    if goal is None:
        goal = NATURAL_GOAL.get(name, "minimize")
        if goal == "maximize":
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
    """The epochs before the last at which Ray's ASHA compares a trial: its milestones, each reached at the
    first whole epoch at or past it."""
    found = {math.ceil(m - 1e-9) for m in milestones(grace_period, reduction_factor, max_epochs, max_epochs)}
    return sorted(e for e in found if e < max_epochs)


def _read_early_stopping(
    reader: SpecReader, raw: dict, max_epochs: int | None, metric: str, warnings: list[str]
) -> dict | None:
    """ASHA settings from `early_stopping` (ours) or `early_terminate` (W&B hyperband), or None.
    Neither key means no early stopping, as in W&B. `max_epochs`: None for a program (length unknown)."""
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
    if metric is None:
        reader.fail("early_stopping", "stops trials by their metric: give metric.name, or drop early_stopping")
    grace_period = reader.number(early.get("grace_period", 1), "early_stopping.grace_period", int, minimum=1)
    if max_epochs is not None and grace_period > max_epochs:
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


def _read_hyperband(
    reader: SpecReader, wandb: dict, max_epochs: int | None, metric: str, warnings: list[str]
) -> dict | None:
    """W&B's hyperband stopping as Ray's ASHA: W&B's brackets are the epochs (a program: the values of the
    metric logged so far) at which a run is compared with the others and stopped unless it is in the top
    1/eta; ASHA's rungs are the same idea."""
    reader.check_keys(wandb, "early_terminate", HYPERBAND_KEYS)
    if metric is None:
        reader.fail("early_terminate", "stops runs by their metric: give metric.name, or drop early_terminate "
                    "(as W&B requires)")  # fmt: skip
    if wandb.get("type") != "hyperband":
        reader.fail("early_terminate.type", f"only 'hyperband' is understood, got {wandb.get('type')!r}")
    eta = reader.number(wandb.get("eta", 3), "early_terminate.eta")  # W&B's default eta is 3
    if eta <= 1:
        reader.fail("early_terminate.eta", f"must be above 1, got {eta:g}")
    strict = wandb.get("strict", True)  # W&B's schema fills in true
    if not isinstance(strict, bool):
        reader.fail("early_terminate.strict", f"expected true or false, got {strict!r}")
    notes = []
    unit = "epochs" if max_epochs is not None else "iterations"
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
        horizon = min(max_epochs or max_iter, max_iter)  # no bracket at or past max_iter: no rung either
    elif "min_iter" in wandb:  # W&B: brackets at min_iter, min_iter*eta, min_iter*eta^2, ...
        min_iter = reader.number(wandb["min_iter"], "early_terminate.min_iter", int, minimum=1)
        horizon = max_epochs or min_iter * eta**4  # a program's length is unknown: its first brackets
        bands, band = [], float(min_iter)
        while band < horizon:
            bands.append(int(band))
            band *= eta
        if "s" in wandb:
            notes.append("s is used with max_iter only, as in W&B")
    else:
        reader.fail("early_terminate", "give min_iter (the first bracket), or max_iter and s, as W&B requires")
    wandb_epochs = sorted({band for band in bands if band < horizon})
    where = f"{reader.path}: key 'early_terminate'"
    if not wandb_epochs:
        warnings.append(f"{where}: every bracket is at or past max_epochs ({max_epochs}): no trial is stopped early")
        return None
    grace_period = wandb_epochs[0]
    asha_epochs = rung_epochs(grace_period, eta, horizon)
    if asha_epochs != wandb_epochs:
        notes.append(f"W&B would compare runs at {unit} {wandb_epochs}, ASHA compares them at {asha_epochs}")
    if not strict:
        notes.append(
            f"strict: false: W&B would compare a run's best {metric} so far; ASHA compares its {metric} "
            f"at that {unit[:-1]}, as strict: true (W&B's default) does"
        )
    if notes:
        warnings.append(f"{where}: " + "; ".join(notes))
    # W&B's max_iter says where its brackets end (before a program's end, whose length is unknown, or before
    # max_epochs), and so do the rungs.
    end = {"horizon": horizon} if "max_iter" in wandb and horizon != max_epochs else {}
    return {"grace_period": grace_period, "reduction_factor": eta, **end}
