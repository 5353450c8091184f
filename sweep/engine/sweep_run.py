"""One Tune fit of a sweep, on the driver: asks Optuna for each trial, records what Tune hears of it, decides
early stopping from the record, and tells Optuna how each trial ended, after its end is on disk.

Tune reaches it through three small public-API adapters (sweep.engine.tune_adapters): a Searcher (suggest,
on_trial_complete), a scheduler (on_trial_result, on_trial_error) and a callback (start, retry, each step).
"""

from __future__ import annotations

import optuna

from sweep.engine.rungs import Rungs
from sweep.engine.study import outcome, untried_grid_points
from sweep.record.events import EventLog
from sweep.record.state import ENDED, Status, SweepState, number
from sweep.spec.spec import SweepSpec
from sweep.trials import reports

FINISHED = "FINISHED"  # Tune's Searcher.FINISHED: no more trials


def suggest(trial: optuna.Trial, name: str, distribution: optuna.distributions.BaseDistribution):
    """Optuna's public suggest_* call for one of our distributions."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step,
                                 log=distribution.log)  # fmt: skip
    return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


class SweepRun:
    def __init__(self, spec: SweepSpec, log: EventLog, state: SweepState, study, kind, view, on_asked=None,
                 on_end=None):  # fmt: skip
        """`kind`: the trials' adapter (sweep.trials); `view`: the terminal's; `on_asked(number, new)`: once a
        trial is in the record, before Tune starts it; `on_end(trial)`: after each trial's end is recorded and
        told (the exports)."""
        self.spec, self.log, self.state, self.study = spec, log, state, study
        self.view, self.on_asked, self.on_end = view, on_asked, on_end
        # Interrupted trials go first, in number order: the rebuilt study gives them back in that order.
        self.pending = sorted((t for t in state.trials.values() if t.status not in ENDED), key=lambda t: t.number)
        self.new = max(0, spec.num_samples - len(state.trials))  # trials to ask for
        if spec.method == "grid":  # each point once: those no trial has run, as many as num_samples leaves
            fitting = self.tried_points()
            self.new = min(len(untried_grid_points(spec, fitting)), max(0, spec.num_samples - len(fitting)))
        self.handles: dict[str, tuple[int, optuna.Trial]] = {}  # Tune's trial id -> Optuna's number and trial
        self.told: dict[str, set[int]] = {}  # the steps told to Optuna, per Tune trial
        self.last: dict[str, str] = {}  # each trial's last report: Tune hands the last one over twice at the end
        self.ends: dict[str, dict] = {}  # a trial's end report
        self.stopped: dict[str, str] = {}  # early stopping's: why
        self.lost: dict[str, str] = {}  # Tune gave up on the trial (its worker lost too often): why
        self.rungs = None
        if spec.early_stopping and spec.metric:
            self.rungs = Rungs(**{"horizon": kind.horizon, **spec.early_stopping}, mode=spec.mode)
            for trial_number, result in state.order:  # the rungs as the record left them
                self.rungs.decide(trial_number, result["iteration"], number(result["metrics"].get(spec.metric)))

    @property
    def to_run(self) -> int:
        return len(self.pending) + self.new

    def ask(self, trial_id: str) -> dict | str:
        """Tune wants a trial: an interrupted one again (same number, same values), else a new one from
        Optuna, until the sweep has its trials or its target was reached."""
        if self.pending:
            trial = self.pending.pop(0)
            handle = self.study.ask()  # the queued trial of that number
            assert handle.number == trial.number, (handle.number, trial.number)
            for name, param in self.spec.params.items():
                suggest(handle, name, param.distribution)  # its values, queued: Optuna records them
            earlier = trial.curve(self.spec.metric)
            for step, value in earlier.items():  # what it reported before it was cut off
                handle.report(value, step)
            number_, values, self.told[trial_id] = trial.number, trial.params, set(earlier)
            new = False
        else:
            if self.new <= 0 or self.state.target_reached() is not None:
                return FINISHED
            if self.spec.method == "grid":  # W&B's order, queued for Optuna to record
                untried = untried_grid_points(self.spec, self.tried_points())
                if not untried:
                    return FINISHED
                self.study.enqueue_trial(untried[0])
            handle = self.study.ask()
            sampled = {name: suggest(handle, name, p.distribution) for name, p in self.spec.params.items()}
            values = self.spec.trial_values(sampled)
            for name, value in values.items():  # q-rounded, or mapped from a quantile: what ran, for the dashboard
                if value != sampled[name]:
                    handle.set_user_attr(name, value)
            self.log.write("trial", trial=handle.number, params=values)
            number_, self.told[trial_id], new = handle.number, set(), True
            self.new -= 1
        if self.on_asked is not None:
            self.on_asked(number_, new)
        self.handles[trial_id] = (number_, handle)
        return {"trial": number_, "params": values}

    def tried_points(self) -> list[dict]:
        """The samples of the record's trials that the space can give (an edit may have moved it)."""
        return [s for t in self.state.trials.values() if (s := self.spec.samples_of(t.params)) is not None]

    def started(self, trial_id: str) -> None:
        trial_number = self.handles[trial_id][0]
        self.log.write("start", trial=trial_number, attempt=self.state.trials[trial_number].attempts + 1)
        self.view.started(self.state.trials[trial_number])

    def retried(self, trial_id: str, reason: str) -> None:
        """Tune runs the trial again (its worker or node was lost, a CUDA error), from its checkpoint."""
        if trial_id not in self.handles:
            return
        trial_number = self.handles[trial_id][0]
        self.log.write("retry", trial=trial_number, reason=reason)
        self.view.retried(self.state.trials[trial_number], reason)

    def result(self, trial_id: str, tune_result: dict) -> str:
        """A report of a trial: recorded, told to Optuna, and judged by early stopping ('' or why it stops)."""
        report = reports.read(tune_result)
        if report is None or self.last.get(trial_id) == tune_result[reports.KEY] or trial_id not in self.handles:
            return ""
        self.last[trial_id] = tune_result[reports.KEY]
        if report.get("end"):
            self.ends[trial_id] = report
            return ""
        trial_number, handle = self.handles[trial_id]
        self.log.write("result", trial=trial_number, **report)
        result = self.state.trials[trial_number].results[-1]
        value = number(result["metrics"].get(self.spec.metric)) if self.spec.metric else None
        if value is not None and result["step"] not in self.told[trial_id]:
            handle.report(value, result["step"])
            self.told[trial_id].add(result["step"])
        if self.rungs is None:
            return ""
        reason = self.rungs.decide(trial_number, result["iteration"], value)
        if reason:
            self.stopped[trial_id] = f"stopped at {self.spec_unit} {result['iteration']}: {reason}"
        return reason

    @property
    def spec_unit(self) -> str:
        return "epoch" if self.spec.program is None else "logged value"

    def failed_attempt(self, trial_id: str, reason: str) -> None:
        """Tune's error of an attempt: why, should Tune give up on the trial."""
        self.lost[trial_id] = reason

    def complete(self, trial_id: str, tune_result: dict | None, error: bool) -> None:
        """The trial ended: its end on disk, then told to Optuna. A trial removed before it ran (the fit
        ended) has not ended: it stays interrupted."""
        if trial_id not in self.handles or (tune_result is None and not error):
            return
        trial_number, handle = self.handles.pop(trial_id)
        end = self.ends.pop(trial_id, {})
        summary = end.get("summary", {})
        if error:
            status, reason = Status.FAILED, self.lost.pop(trial_id, "Tune gave up on it")
        elif end.get("failed"):
            status, reason = Status.FAILED, end["failed"]
        elif end.get("diverged"):
            status, reason = Status.DIVERGED, "its loss became NaN or infinite"
        elif trial_id in self.stopped:
            status, reason = Status.STOPPED, self.stopped.pop(trial_id)
        else:
            status, reason = Status.COMPLETED, ""
        self.log.write("end", trial=trial_number, status=status.value, reason=reason, summary=summary)
        trial = self.state.trials[trial_number]
        state, value = outcome(trial, self.spec)
        self.study.tell(handle, value, state=state)
        if self.on_end is not None:
            self.on_end(trial)
        self.view.ended(trial)
