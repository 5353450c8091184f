"""A sweep as its record says it is: `read(experiment_dir)` replays events.jsonl into a `SweepState`.

The one place that says what a trial's status, value and best step are, when a trial has ended, which
trial is the best, whether the target was reached and whether the sweep has work left. The driver keeps
the same state live (it applies each event as it writes it); every view reads a SweepState.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sweep.record.events import read_events
from sweep.record.files import EVENTS, held
from text_recognizer.util import UserError


class Status(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # trained to its end
    STOPPED = "stopped early"  # the early-stopping rule ended it
    FAILED = "failed"  # its code raised, its program failed, or its worker was lost too often
    DIVERGED = "diverged"  # its loss became NaN or infinite
    INTERRUPTED = "interrupted"  # its sweep's driver ended first (Ctrl-C, a kill): a resume continues it


ENDED = (Status.COMPLETED, Status.STOPPED, Status.FAILED, Status.DIVERGED)  # never run again


def better(value: float, than: float | None, mode: str) -> bool:
    return than is None or (value > than if mode == "max" else value < than)


def number(value) -> float | None:
    """A metric's value where it is a finite number (a W&B summary such as {"min": x} is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class Best:
    value: float
    step: int | None  # the reported step it came from; None: the trial's summary (a W&B program's)
    metrics: dict  # every metric of that step (or the summary)


@dataclass
class Trial:
    number: int  # Optuna's trial number: never changes
    params: dict  # the values it ran with
    asked: float  # when
    # {"step", "metrics", "time", "step_time_s", "node", "gpus", "iteration"}: what its latest attempt reported (a
    # result at a step drops the earlier ones at that step or later: the trial went back to a checkpoint,
    # or a program started again)
    results: list[dict] = field(default_factory=list)
    status: Status = Status.RUNNING
    reason: str = ""  # why it failed, or was stopped
    summary: dict = field(default_factory=dict)  # a W&B program's run summary, once it ended
    attempts: int = 0  # starts on a worker: retries and resumes add one each
    retries: int = 0  # Tune's, of a lost worker or node
    started: float | None = None
    ended: float | None = None
    origin: str = ""  # a warm start's: "DIR trial N"

    @property
    def node(self) -> str:
        return self.results[-1]["node"] if self.results else ""

    @property
    def steps(self) -> int:
        """How far it got: its last reported step (an epoch of our trainer, a logged row of a program)."""
        return self.results[-1]["step"] if self.results else 0

    @property
    def train_time_s(self) -> float:
        return sum(result["step_time_s"] for result in self.results)

    def best(self, metric: str | None, mode: str) -> Best | None:
        """The trial's value, as W&B's search takes a finished run's: the best, under the goal, of the
        metric's reported values and of its summary value where that is a plain number; None without one."""
        if metric is None:
            return None
        best = None
        for result in self.results:
            value = number(result["metrics"].get(metric))
            if value is not None and better(value, best and best.value, mode):
                best = Best(value, result["step"], result["metrics"])
        value = number(self.summary.get(metric))
        if value is not None and better(value, best and best.value, mode):
            best = Best(value, None, self.summary)
        return best

    def value(self, metric: str | None, mode: str) -> float | None:
        best = self.best(metric, mode)
        return best.value if best else None

    def curve(self, metric: str | None) -> dict[int, float]:
        """The finite values of the metric it reported, by step: Optuna's intermediate values."""
        values = {r["step"]: number(r["metrics"].get(metric)) for r in self.results}
        return {step: value for step, value in values.items() if value is not None}


@dataclass
class SweepState:
    spec: dict  # the resolved spec in force: the start's, or the latest edit's
    trials: dict[int, Trial] = field(default_factory=dict)  # this sweep's, by number
    warm: dict[int, Trial] = field(default_factory=dict)  # earlier experiments' ended trials: history only
    edits: list[dict] = field(default_factory=list)  # each edit event (its `next_trial`: the first asked after it)
    order: list[tuple[int, dict]] = field(default_factory=list)  # every result as it came: early stopping's history
    source_copy: str = ""  # the sweep file in force, as the directory keeps it (source.yaml, source-2.yaml...)
    flags: dict = field(default_factory=dict)  # the command line's settings over the file's
    cwd: str = ""  # where the sweep first ran: its program's and the file's relative paths start there
    address: str | None = None  # the Ray cluster it ran on (None: a local Ray)
    started: float = 0.0
    live: bool = False  # a driver runs it now

    @property
    def metric(self) -> str | None:
        return self.spec["metric"]

    @property
    def mode(self) -> str:
        return self.spec["mode"]

    @property
    def num_samples(self) -> int:
        return self.spec["num_samples"]

    def ended(self) -> list[Trial]:
        return [t for t in self.trials.values() if t.status in ENDED]

    def count(self, status: Status) -> int:
        return sum(t.status == status for t in self.trials.values())

    def best(self) -> Trial | None:
        """The trial with the best value among those that neither failed nor diverged (an interrupted one
        counts: it ran that far); the earlier trial on a tie; None without a metric or a value."""
        best, best_value = None, None
        for trial in self.trials.values():
            value = trial.value(self.metric, self.mode)
            if value is not None and trial.status not in (Status.FAILED, Status.DIVERGED):
                if better(value, best_value, self.mode):
                    best, best_value = trial, value
        return best

    def reached(self, value: float | None) -> bool:
        target = self.spec.get("target")
        return target is not None and value is not None and not better(target, value, self.mode)

    def target_reached(self) -> Trial | None:
        """The trial that first reached the sweep's target (W&B's metric.target), in time, among those that
        neither failed nor diverged (as `best`), whatever it did after: once one has, no new trial starts."""
        when = {}
        for trial in self.trials.values():
            if trial.status in (Status.FAILED, Status.DIVERGED):
                continue
            times = [r["time"] for r in trial.results if self.reached(number(r["metrics"].get(self.metric)))]
            if self.reached(number(trial.summary.get(self.metric))):
                times.append(trial.ended or math.inf)
            if times:
                when[trial.number] = min(times)
        return self.trials[min(when, key=when.get)] if when else None

    def unfinished(self) -> bool:
        """Work left: a trial not ended, or fewer trials than asked for and the target not reached."""
        if any(t.status not in ENDED for t in self.trials.values()):
            return True
        return len(self.trials) < self.num_samples and self.target_reached() is None

    def apply(self, event: dict) -> None:
        """One event of the record, as the driver writes it and every reader replays it."""
        kind, when = event["event"], event["time"]
        trial = self.trials.get(event.get("trial"))
        if kind == "sweep":
            self.spec, self.started, self.live = event["spec"], when, True
            self.source_copy, self.flags, self.cwd = event["source"], event["flags"], event["cwd"]
            self.address = event.get("address")
        elif kind == "warm_start":
            for past in event["trials"]:
                self.warm[past["number"]] = Trial(
                    past["number"], past["params"], when, past["results"], Status(past["status"]),
                    summary=past["summary"], origin=past["origin"],
                )  # fmt: skip
        elif kind == "resume":
            self.live = True
            if "num_samples" in event:
                self.spec = {**self.spec, "num_samples": event["num_samples"]}
        elif kind == "edit":
            self.spec, self.source_copy = event["spec"], event["source_copy"]
            self.flags = {k: v for k, v in self.flags.items() if k != "num_samples"}  # the edited file's count
            self.edits.append(event)
        elif kind == "trial":
            self.trials[event["trial"]] = Trial(event["trial"], event["params"], when)
        elif kind == "start":
            trial.status, trial.attempts = Status.RUNNING, event["attempt"]
            trial.started = trial.started or when
        elif kind == "result":
            result = {k: event[k] for k in ("step", "metrics", "step_time_s", "node", "gpus")} | {"time": when}
            trial.results = [r for r in trial.results if r["step"] < result["step"]] + [result]
            # Early stopping's clock: an epoch of our trainer; a program's count of logged values of the metric.
            counted = [r for r in trial.results if number(r["metrics"].get(self.metric)) is not None]
            result["iteration"] = result["step"] if self.spec["unit"] == "epoch" else len(counted)
            self.order.append((trial.number, result))
        elif kind == "retry":
            trial.retries += 1
            trial.reason = event["reason"]
        elif kind == "end":
            trial.status, trial.reason, trial.ended = Status(event["status"]), event["reason"], when
            trial.summary = event.get("summary") or {}
        elif kind == "stop":
            self.close()

    def close(self) -> None:
        """No driver runs the sweep: a trial it left open was interrupted."""
        self.live = False
        for trial in self.trials.values():
            if trial.status not in ENDED:
                trial.status = Status.INTERRUPTED


def replay(events: list[dict], where: str = "the record") -> SweepState:
    """The state the events leave; a record that is not one sweep's (cut at its start, edited by hand,
    written by another version) is one line naming the event."""
    if not events or events[0].get("event") != "sweep":
        raise UserError(f"{where}: its first line is not the sweep's start: not a record this version can read")
    state = SweepState(spec={})
    for line, event in enumerate(events, 1):
        try:
            state.apply(event)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise UserError(
                f"{where}: line {line} ({event.get('event')!r}) does not follow from the lines "
                f"before it ({type(exc).__name__}: {exc}): not a record this version can read"
            ) from None
    return state


def read(experiment_dir: str | Path, live: bool | None = None) -> SweepState:
    """The sweep in `experiment_dir` as its record says; `live`: whether its driver runs now (default: the
    directory's lock says), else its open trials are interrupted."""
    experiment_dir = Path(experiment_dir)
    events = read_events(experiment_dir)
    if not events:
        raise UserError(f"{experiment_dir}: not a sweep's experiment directory (no record: events.jsonl)")
    state = replay(events, str(experiment_dir / EVENTS))
    if not (held(experiment_dir) if live is None else live):
        state.close()
    return state
