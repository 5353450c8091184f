"""The Optuna study of a sweep, made anew from its record at the start of every run, resume, edit and warm
start: the searcher learns from every trial the record holds, and optuna-dashboard shows them.

Each trial keeps its number: the record's trials are added in number order (history from a warm start
first), the ended ones with their outcome, the interrupted ones queued (`enqueue_trial`) so that the next
`ask` gives them back. A trial whose values the current space cannot give (an edit moved a range, dropped
a value) is added as FAIL with no parameters, which no sampler learns from, so the numbers stay in step.
"""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from sweep.record.files import EVENTS, OPTUNA_JOURNAL, fsync_directory
from sweep.record.state import ENDED, Status, SweepState, Trial
from sweep.spec.spec import SweepSpec
from text_recognizer.util import UserError


def journal_storage(path: Path) -> JournalStorage:
    # A lock file beside the journal (not Optuna's default, a symlink to the journal's path, which dangles
    # once the directory is moved): it moves with the directory, and Optuna's grace period can read it.
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def outcome(trial: Trial, spec: SweepSpec) -> tuple[TrialState, float | None]:
    """How an ended trial is told to Optuna. Early-stopped trials are PRUNED (with `stopped_trials:
    pruned`), as Optuna's own pruners leave them: TPE ranks them by their last intermediate value, below the
    trials that finished. A diverged trial is PRUNED too, with its finite values: TPE ignores FAIL trials
    and would propose their region again. A sweep without a metric tells nothing to learn from (PRUNED)."""
    value = trial.value(spec.metric, spec.mode)
    if trial.status == Status.FAILED:
        return TrialState.FAIL, None
    pruned = trial.status == Status.DIVERGED or (trial.status == Status.STOPPED and spec.stopped_trials == "pruned")
    if pruned or value is None:
        return TrialState.PRUNED, None
    return TrialState.COMPLETE, value


def make_sampler(spec: SweepSpec, seed_offset: int) -> optuna.samplers.BaseSampler:
    """`seed_offset`: the trials the record holds, so that a resumed sweep's random draws are new ones."""
    seed = spec.seed + seed_offset
    if spec.method != "bayes":  # a grid's points are queued by the searcher (untried_grid_points)
        return optuna.samplers.RandomSampler(seed=seed)
    # Optuna samples its first 10 trials at random; in a sweep of 16 that leaves TPE little to do. A quarter
    # of the trials (4 to 10) is enough to start modelling. constant_liar: running trials count as
    # pessimistic results, so that trials running side by side spread out.
    startup = min(10, max(4, spec.num_samples // 4))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def untried_grid_points(spec: SweepSpec, tried: list[dict]) -> list[dict]:
    """W&B's grid: every combination of the values, parameters in name order, less those `tried` (each point
    runs once: after an edit, the new grid's points that no trial of the record ran)."""
    names = sorted(spec.params)
    points = [dict(zip(names, combination, strict=True))
              for combination in itertools.product(*(spec.params[n].distribution.choices for n in names))]  # fmt: skip
    return [point for point in points if point not in tried]


def open_study(experiment_dir: Path, state: SweepState, spec: SweepSpec) -> optuna.Study:
    """The study for a fit: written aside from the record, then put in place of the journal."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created": the start line says it
    direction = "maximize" if spec.mode == "max" else "minimize"
    aside = experiment_dir / f".{OPTUNA_JOURNAL}.{uuid.uuid4().hex}.tmp"
    study = optuna.create_study(study_name=spec.name, storage=journal_storage(aside), direction=direction)
    distributions = {name: param.distribution for name, param in spec.params.items()}
    past = sorted([*state.warm.values(), *state.trials.values()], key=lambda t: t.number)
    if [t.number for t in past] != list(range(len(past))):  # Optuna numbers trials 0, 1, ...: so must the record
        raise UserError(f"{experiment_dir / EVENTS}: its trials are not numbered 0 to {len(past) - 1} in turn "
                        "(edited by hand?): not a record this version can continue")  # fmt: skip
    for trial in past:
        samples = spec.samples_of(trial.params)
        attrs = {"status": trial.status.value, **({"origin": trial.origin} if trial.origin else {})}
        if trial.status not in ENDED:
            study.enqueue_trial(samples, user_attrs=attrs)  # asked again by the next fit, first
            continue
        state_, value = outcome(trial, spec)
        if samples is None:
            state_, value, attrs = TrialState.FAIL, None, {**attrs, "outside_space": True, "ran": str(trial.params)}
        study.add_trial(
            optuna.trial.create_trial(
                state=state_,
                value=value,
                params=samples or {},
                distributions=distributions if samples else {},
                intermediate_values=trial.curve(spec.metric) if samples else {},
                user_attrs=attrs,
            )
        )
    journal = experiment_dir / OPTUNA_JOURNAL
    os.replace(aside, journal)
    fsync_directory(experiment_dir)
    return optuna.load_study(study_name=spec.name, storage=journal_storage(journal),
                             sampler=make_sampler(spec, len(past)))  # fmt: skip
