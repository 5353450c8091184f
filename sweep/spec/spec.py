"""`SweepSpec`: a sweep file once read, with the command line's flags applied. Built by `load_spec`; the
record keeps its `resolved()` form and a copy of the file, from which every later command rebuilds it."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from sweep.record.events import plain
from sweep.spec.command import Program
from sweep.spec.params import IndexedChoice, Param
from text_recognizer.util import UserError

TRAINER_METRICS = ("val_acc", "val_loss")  # what every trial of our trainer reports after each epoch
# What the command line may set over the file (`sweep run --gpus-per-trial 1` and such).
FLAGS = ("gpus_per_trial", "cpus_per_trial", "num_samples", "max_concurrent", "seed", "checkpoint_interval_s",
         "max_failures")  # fmt: skip


@dataclass
class SweepSpec:
    """Built only by `load_spec`, which states every default once, where it reads each key."""

    path: str
    name: str
    base_config: dict  # our trainer: a complete run config (every flag's default, then the fixed settings)
    params: dict[str, Param]
    metric: str | None  # None: a grid or random sweep without a metric (W&B runs every trial, chooses none)
    mode: str
    target: float | None  # once a trial reaches it, no new trial starts (W&B's metric.target)
    method: str
    num_samples: int
    seed: int
    max_concurrent: int | None
    stopped_trials: str  # how trials that early stopping ended are told to Optuna: pruned or completed
    early_stopping: dict | None  # grace_period and reduction_factor (successive halving), or None
    gpus_per_trial: float
    cpus_per_trial: float
    warnings: list[str]  # W&B keys reported and ignored, meanings that differ from W&B's
    checkpoint_interval_s: float = 60.0  # a trial saves a checkpoint at most this often (0: every epoch)
    max_failures: int = 2  # retries of a trial whose worker or node was lost
    program: Program | None = None  # a program that each trial runs; None: our trainer, in-process

    @property
    def max_epochs(self) -> int | None:
        """Our trainer's epochs; a program's length is not known (None)."""
        return self.base_config.get("max_epochs")

    def trial_values(self, sampled: dict) -> dict:
        """The searched parameters' values of one trial, from Optuna's samples: what the trial runs with."""
        return {k: self.params[k].value(v) for k, v in sampled.items()}

    def samples_of(self, values: dict) -> dict | None:
        """Optuna's samples that give these values (a trial that ran, maybe under another spec), or None where
        a searched parameter is missing or cannot give its value: the trial does not fit this space."""
        samples = {}
        for name, param in self.params.items():
            sample = param.sample_of(values[name]) if name in values else None
            if sample is None:
                return None
            samples[name] = sample
        return samples

    def trial_config(self, values: dict) -> dict:
        """What one trial runs with: our trainer's complete run config, or a program's arguments (nested as
        W&B nests them). A value the parameter does not accept raises ValueError."""
        checked = {k: self.params[k].check(v) for k, v in values.items()}
        return self.program.args(checked) if self.program else {**self.base_config, **checked}

    def flags(self, defaults: SweepSpec) -> dict:
        """The settings that differ from the file's own (`defaults`): what the command line set."""
        return {key: getattr(self, key) for key in FLAGS if getattr(self, key) != getattr(defaults, key)}

    def resolved(self) -> dict:
        """The spec as the record keeps it, in JSON's types (a spec read back from the record compares equal):
        what every view reads."""
        from optuna.distributions import distribution_to_json

        params = {
            name: {
                "source": p.source,
                "optuna": json.loads(distribution_to_json(p.distribution)),
                **({"sampled": "index" if isinstance(p.from_quantile, IndexedChoice) else "quantile"}
                   if p.from_quantile else {}),
                "types": p.types,
                "values": p.values,
            }
            for name, p in self.params.items()
        }  # fmt: skip
        program = None
        if self.program:
            program = {k: v for k, v in dataclasses.asdict(self.program).items() if k != "environ"}
        return plain(
            {
                "name": self.name,
                "source": self.path,
                "kind": "program" if self.program else "trainer",
                "metric": self.metric,
                "mode": self.mode,
                "target": self.target,
                "method": self.method,
                "num_samples": self.num_samples,
                "seed": self.seed,
                "max_concurrent": self.max_concurrent,
                "stopped_trials": self.stopped_trials,
                "early_stopping": self.early_stopping,
                "gpus_per_trial": self.gpus_per_trial,
                "cpus_per_trial": self.cpus_per_trial,
                "checkpoint_interval_s": self.checkpoint_interval_s,
                "max_failures": self.max_failures,
                "base_config": self.base_config,
                "params": params,
                # What each report holds, and what a step is: an epoch of our trainer, a logged row of a program.
                "metrics": list(TRAINER_METRICS) if not self.program else [m for m in [self.metric] if m],
                "unit": "step" if self.program else "epoch",
                "max_steps": self.max_epochs,
                "program": program,
            }
        )


def milestones(grace_period: int, reduction_factor: float, horizon: float | None, up_to: float) -> list[float]:
    """ASHA's milestones, grace_period * reduction_factor^k, up to `up_to` and below `horizon` (a trial's last
    step, where none is needed; None: not known), lowest first: where a trial is compared with the others."""
    found, milestone = [], float(grace_period)
    while milestone <= up_to and (horizon is None or milestone < horizon):
        found.append(milestone)
        milestone *= reduction_factor
    return found


def grid_size(params: dict[str, Param]) -> int:
    """The points of a grid: each combination of its parameters' values."""
    return math.prod(len(param.distribution.choices) for param in params.values())


def check_flags(spec: SweepSpec, flags: dict) -> SweepSpec:
    """The command line's flags over the file's settings, each checked."""
    for key, value in flags.items():
        may_be_zero = key in ("gpus_per_trial", "seed", "checkpoint_interval_s", "max_failures")
        if value < 0 or (value == 0 and not may_be_zero):
            flag = "--checkpoint-interval" if key == "checkpoint_interval_s" else f"--{key.replace('_', '-')}"
            raise UserError(f"{flag} must be {'>= 0' if may_be_zero else '> 0'}, got {value:g}")
    spec = dataclasses.replace(spec, **flags)
    check_resources(spec)
    return spec


def check_resources(spec: SweepSpec) -> None:
    """What each trial asks of Ray against what it will do with it, once the command line's flags are
    applied too: every mismatch that would fail each trial or leave a GPU idle is one line, before Ray."""
    gpus, key = spec.gpus_per_trial, f"{spec.path}: key 'resources.gpus_per_trial' (or --gpus-per-trial)"
    if 0 < gpus < 1 and abs(1 / gpus - round(1 / gpus)) > 1e-6:
        raise UserError(f"{key}: {gpus:g} does not divide a GPU, so part of each GPU stays idle: use 1/n (0.5, 0.25)")
    if gpus > 1 and not float(gpus).is_integer():
        raise UserError(f"{key}: {gpus:g}: above 1, give a whole number of GPUs")
    if spec.program is not None:
        return  # a program uses the GPUs it is given as it likes (several: torchrun, DDP)
    config = spec.base_config
    wants_gpu = bool(config["gpus"]) or config["accelerator"] in ("gpu", "cuda")
    if gpus > 1:
        raise UserError(
            f"{key}: {gpus:g}: a trial of our trainer is one process; several GPUs would start Lightning's DDP "
            "inside one Ray trial, which sweep does not do: use 1, or a fraction to share a GPU"
        )
    if gpus == 0 and wants_gpu:
        raise UserError(
            f"{spec.path}: key 'run.gpus'/'run.accelerator': trials train on a GPU, but reserve none, and a "
            "trial sees only the GPUs Ray gives it: every trial would fail; pass --gpus-per-trial 1 (or 0.5 to "
            "share one)"
        )
    if gpus > 0 and config["accelerator"] == "cpu":
        raise UserError(
            f"{spec.path}: key 'run.accelerator': cpu, with {gpus:g} GPU reserved per trial that would stay idle: "
            "pass --gpus-per-trial 0, or drop accelerator: cpu"
        )
    if gpus > 0 and max(config["gpus"] or 1, config["devices"] if isinstance(config["devices"], int) else 1) > 1:
        raise UserError(f"{spec.path}: key 'run.gpus'/'run.devices': a trial gets {gpus:g} GPU: ask for 1 at most")
