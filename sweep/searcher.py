"""The Optuna searcher: TPE, random or grid sampling, seeded, its study in a journal file."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sweep.files import OPTUNA_JOURNAL, ended_ids, read_results, relocated
from sweep.space import SweepSpec


class TrialSpace:
    """The searcher's define-by-run space (Ray's documented alternative to a dict of distributions): it
    samples what Optuna models, then returns the values the trial runs with (q-rounded, mapped from a
    quantile), so Tune's config, params.json and results.csv hold what ran; the Optuna trial keeps them in
    its user attributes, which optuna-dashboard shows, beside `tune_trial_id`, the trial_id of results.csv.
    An object, not a bound method: Tune pickles it with the searcher, and it stays that searcher's."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self.trial_id = ""  # the Tune trial being sampled for

    def __call__(self, trial: optuna.Trial) -> dict:
        trial.set_user_attr("tune_trial_id", self.trial_id)
        sampled = {name: suggest(trial, name, param.distribution) for name, param in self.spec.params.items()}
        values = self.spec.trial_values(sampled)
        for name, value in values.items():
            if value != sampled[name]:
                trial.set_user_attr(name, value)
        return values


class ExperimentJournal(JournalFileBackend):
    """Optuna's journal file, which follows its experiment directory: Tune pickles the searcher with its
    study, and a sweep that was moved (`mv`) and resumed writes to the journal where it is now."""

    def __init__(self, file_path: str):
        super().__init__(file_path)
        self.file_path = file_path

    def __reduce__(self):  # unpickled by journal_at, which relocates it then
        return journal_at, (self.file_path,)


def journal_at(file_path: str) -> ExperimentJournal:
    """The journal saved at `file_path`, where its experiment directory is now (files.relocated)."""
    path = Path(file_path)
    return ExperimentJournal(str(relocated(path.parent) / path.name))


def journal_storage(experiment_dir: Path) -> JournalStorage:
    return JournalStorage(ExperimentJournal(str(experiment_dir / OPTUNA_JOURNAL)))


class SweepSearch(OptunaSearch):
    """Ray's OptunaSearch, with these changes.

    Stopped trials are PRUNED (with `stopped_trials: pruned`), as Optuna's own pruners do: Ray's OptunaSearch tells
    Optuna COMPLETE with the value of its last epoch, so TPE ranks a trial stopped after one epoch as if it
    had trained fully. Pruned, it keeps its per-epoch values (reported by `on_trial_result`) and TPE ranks
    it below the trials that finished.

    W&B's metric.target: once a trial reports a value that reaches it, `suggest` answers FINISHED, so Tune
    starts no new trial and lets the running ones finish, as W&B does. (Tune's stoppers either stop one
    trial or all of them, running ones too.)

    Its space is a TrialSpace. A resumed sweep's searcher catches up with what happened after Tune last
    saved it (see `restore`).
    """

    def __init__(self, *, spec: SweepSpec, experiment_dir: Path, **kwargs):
        self.space = TrialSpace(spec)
        super().__init__(space=self.space, **kwargs)
        self.spec = spec
        self.experiment_dir = experiment_dir
        self.target_reached = False
        self.suggested: set[str] = set()  # the Tune trials this searcher was asked for
        self.ended: set[str] = set()  # trials told to Optuna after Tune last saved this searcher
        self.reported: dict[str, int] = {}  # the last epoch told to Optuna, per trial
        self.seen: dict[str, int] = {}  # the last iteration Tune passed to on_trial_result, per trial

    def restore(self, checkpoint_path: str):
        """Tuner.restore: the state Tune saved (up to ~10 s before the driver ended), then what the study
        and results.csv hold since. A trial that ended after the save is not told again; an Optuna trial
        asked for after it is one that Tune does not know: FAIL, and Tune asks for another in its place.
        A trial that continues from a checkpoint does not tell Optuna again the steps it had told."""
        super().restore(checkpoint_path)
        self.experiment_dir = relocated(self.experiment_dir)
        self.ended = ended_ids(read_results(self.experiment_dir, self.spec.columns))
        study = optuna.load_study(study_name=self.spec.name, storage=journal_storage(self.experiment_dir))
        for trial in study.get_trials(deepcopy=False):
            tune_trial_id = trial.user_attrs.get("tune_trial_id")
            if trial.state == optuna.trial.TrialState.RUNNING and tune_trial_id not in self.suggested:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            elif trial.intermediate_values:
                self.reported[tune_trial_id] = max(trial.intermediate_values)

    def suggest(self, trial_id: str):
        if self.target_reached:
            return Searcher.FINISHED
        self.space.trial_id = trial_id
        self.suggested.add(trial_id)
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict):
        self.seen[trial_id] = result.get("training_iteration")
        if trial_id in self.ended or result.get("failed") or not math.isfinite(result[self.spec.metric]):
            return  # Optuna keeps the last finite value
        self.target_reached = self.target_reached or self.spec.reached_target(result[self.spec.metric])
        # Optuna's step is the trial's epoch, which Tune's training_iteration lags when a trial continues from a
        # checkpoint newer than Tune's record of it. An epoch trained again (a retry, a resume) is not told twice.
        if result["epoch"] > self.reported.get(trial_id, 0):
            self.reported[trial_id] = result["epoch"]
            super().on_trial_result(trial_id, {**result, "training_iteration": result["epoch"]})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self.ended:
            return
        if result is not None and result.get("failed"):  # the training code raised: FAIL
            return super().on_trial_complete(trial_id, result=None, error=True)
        diverged = result is not None and result.get("diverged")
        if self.spec.max_epochs:  # our trainer: ASHA also stops a trial at its last epoch, which is no early stop
            stopped = result is not None and result["epoch"] < self.spec.max_epochs
        else:  # Tune withholds from on_trial_result only the result on which the scheduler stopped the trial
            stopped = result is not None and result["training_iteration"] != self.seen.get(trial_id)
        stopped_early = not error and stopped
        if not (diverged or (stopped_early and self.spec.stopped_trials == "pruned")):
            return super().on_trial_complete(trial_id, result=result, error=error)
        # Tune hands the result that made ASHA stop the trial only to this method: record it as the trial's
        # last intermediate value, then end the trial with neither result nor error, which OptunaSearch
        # tells Optuna as PRUNED. A diverged trial is PRUNED with its last finite value: TPE ignores FAIL
        # trials, and would propose their region again.
        self.on_trial_result(trial_id, result)
        super().on_trial_complete(trial_id, result=None, error=False)


def suggest(trial: optuna.Trial, name: str, distribution: optuna.distributions.BaseDistribution):
    """Optuna's public suggest_* call for one of our distributions."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def make_searcher(spec: SweepSpec, experiment_dir: Path, seed_offset: int = 0) -> SweepSearch:
    """`seed_offset`: the trials a grown sweep already has, so that its random draws are new ones."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created": the start line says it
    if spec.method == "grid":
        grid = {name: param.distribution.choices for name, param in spec.params.items()}
        sampler = optuna.samplers.GridSampler(grid, seed=spec.seed + seed_offset)
    elif spec.method == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.seed + seed_offset)
    else:
        # Optuna samples its first 10 trials at random; in a sweep of 16 that leaves TPE little to do.
        # A quarter of the trials (4 to 10) is enough to start modelling. constant_liar: running trials
        # count as pessimistic results, so that trials running side by side spread out.
        startup = min(10, max(4, spec.num_samples // 4))
        sampler = optuna.samplers.TPESampler(seed=spec.seed + seed_offset, n_startup_trials=startup, constant_liar=True)
    kwargs = dict(
        metric=spec.metric,
        mode=spec.mode,
        sampler=sampler,
        study_name=spec.name,
        storage=journal_storage(experiment_dir),
    )
    return SweepSearch(**kwargs, spec=spec, experiment_dir=experiment_dir)
