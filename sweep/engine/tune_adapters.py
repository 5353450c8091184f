"""How Tune reaches a SweepRun, through its public extension points only. None of them keeps state of its
own: the record is the sweep's state, so nothing needs saving for a resume (`save` writes no file), and
each pickles as an empty shell (Tune pickles them into its tuner.pkl, in its own temporary directory, for a
Tuner.restore that sweep never does)."""

from __future__ import annotations

from pathlib import Path

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher


class Shell:
    def __getstate__(self) -> dict:
        return {}


class StudySearcher(Shell, Searcher):
    """Tune's searcher: each trial from the sweep's Optuna study (sweep_run.SweepRun.ask)."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the sweep's metric is the record's business, not Tune's

    def suggest(self, trial_id: str):
        return self.run.ask(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.run.complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        pass  # the record holds the sweep

    def restore(self, checkpoint_path: str) -> None:
        pass


class StudyScheduler(Shell, FIFOScheduler):
    """Tune's scheduler: trials in the order asked; early stopping decided over the record
    (sweep.engine.rungs), which Tune hears of first among its listeners."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return TrialScheduler.STOP if self.run.result(trial.trial_id, result) else TrialScheduler.CONTINUE

    def on_trial_error(self, tune_controller, trial) -> None:
        self.run.failed_attempt(trial.trial_id, error_line(trial))


class RecordCallback(Shell, tune.Callback):
    """Tune's callback: each start and retry of a trial, and the terminal view's clock."""

    def __init__(self, run):
        self.run = run

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run.started(trial.trial_id)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.run.retried(trial.trial_id, error_line(trial))

    def on_step_end(self, iteration, trials, **info):
        self.run.view.refresh()


def error_line(trial) -> str:
    """The last line of the error of a trial's attempt, which Tune has just written to its error file
    (Trial.error_file, a public attribute of Ray's DeveloperAPI Trial)."""
    try:
        lines = [line.strip() for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):
        lines = []
    return lines[-1] if lines else "its worker or node was lost"
