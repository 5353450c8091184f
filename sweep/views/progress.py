"""The sweep's terminal view, instead of Tune's tables: a line per ended trial and a live status line, read
from the live record.

In a terminal the status line is a tqdm bar redrawn in place; in a log file or CI (not a TTY) it is a plain
line printed at most every SWEEP_STATUS_EVERY_S seconds (default 10). Values are rounded here only.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

from sweep.record.state import Status, SweepState, Trial

REDRAW_EVERY_S = 0.5  # in a terminal


def status_every_s() -> float:
    """Without a terminal: often enough to see it move, rarely enough to read a log."""
    return float(os.environ.get("SWEEP_STATUS_EVERY_S", "10"))


def short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def metric_text(value: float) -> str:
    return f"{value:.4g}"


class ProgressView:
    def __init__(self, state: SweepState, stream=None, on_refresh=None):
        """`on_refresh`: called on each of Tune's steps (the driver uploads a remote experiment's record)."""
        self.state = state
        self.stream = stream or sys.stdout
        self.on_refresh = on_refresh
        self.before = {t.number for t in state.ended()}  # a resumed sweep's
        self.done = len(self.before)
        self.start = self.last_status = time.monotonic()
        self.bar = None
        if self.stream.isatty():
            self.bar = tqdm(total=state.num_samples, initial=self.done, file=self.stream, dynamic_ncols=True,
                            bar_format="{n_fmt}/{total_fmt} trials |{bar:20}| {desc}", leave=False)  # fmt: skip

    def started(self, trial: Trial) -> None:
        self.refresh(force=True)

    def retried(self, trial: Trial, reason: str) -> None:
        self.write(f"trial {trial.number}: {reason}; running it again ({trial.retries} of "
                   f"{self.state.spec['max_failures']} retries)")  # fmt: skip

    def ended(self, trial: Trial) -> None:
        self.done += 1
        self.write(self.trial_line(trial))
        if self.bar is not None:
            self.bar.update(1)
        self.refresh(force=True)

    def trial_line(self, trial: Trial) -> str:
        spec = self.state.spec
        params = " ".join(f"{name}={short(trial.params.get(name))}" for name in spec["params"])
        unit = spec["unit"]
        score = ""
        if self.state.metric:
            best = trial.best(self.state.metric, self.state.mode)
            where = "summary" if best and best.step is None else f"{unit} {best.step}" if best else ""
            score = (
                f"{self.state.metric} {metric_text(best.value)} ({where})  " if best else f"no {self.state.metric}  "
            )
        length = f"{trial.steps}/{spec['max_steps']} {unit}s" if spec["max_steps"] else f"{trial.steps} {unit}s"
        status = f"FAILED: {trial.reason}" if trial.status == Status.FAILED else trial.status.value
        width = len(str(self.state.num_samples))
        return (
            f"[{self.done:{width}}/{self.state.num_samples}] trial {trial.number}  {params}  {score}{length}  {status}"
        )

    def status(self) -> str:
        state = self.state
        elapsed = time.monotonic() - self.start
        parts = [
            f"{state.count(Status.RUNNING)} running",
            f"{state.count(Status.STOPPED)} stopped early",
            f"{state.count(Status.FAILED)} failed",
        ]
        best = state.best()
        if best is not None:
            parts.append(
                f"best {state.metric} {metric_text(best.value(state.metric, state.mode))} (trial {best.number})"
            )
        parts.append(f"{tqdm.format_interval(elapsed)} elapsed")
        ended_here = self.done - len(self.before)
        if 0 < ended_here and self.done < state.num_samples:
            left = elapsed / ended_here * (state.num_samples - self.done)
            parts.append(f"~{tqdm.format_interval(left)} left")
        return ", ".join(parts)

    def refresh(self, force: bool = False) -> None:
        if self.on_refresh is not None:
            self.on_refresh()
        now = time.monotonic()
        if self.bar is not None:
            if force or now - self.last_status >= REDRAW_EVERY_S:
                self.bar.set_description_str(self.status())  # redraws
                self.last_status = now
        elif now - self.last_status >= status_every_s():
            self.write(f"[{self.done}/{self.state.num_samples} trials] {self.status()}")
            self.last_status = now

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)  # above the bar, which is drawn again below it
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
