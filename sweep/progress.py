"""The sweep's terminal view, instead of Tune's tables: a line per ended trial and a live status line.

In a terminal the status line is a tqdm bar redrawn in place; in a log file or CI (not a TTY) it is a
plain line printed at most every STATUS_EVERY_S seconds. "Best" is a trial's best epoch, as in results.csv.
"""

from __future__ import annotations

import sys
import time

from ray import tune
from tqdm import tqdm

from sweep.files import ended_ids
from sweep.results import ResultsWriter
from sweep.space import SweepSpec

STATUS_EVERY_S = 10.0  # without a terminal: often enough to see it move, rarely enough to read a log
REDRAW_EVERY_S = 0.5  # in a terminal


def format_value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class ProgressView(tune.Callback):
    """Reads the rows of the ResultsWriter, which must come before it in Tune's callbacks."""

    def __init__(self, spec: SweepSpec, writer: ResultsWriter, stream=None):
        self.spec = spec
        self.writer = writer
        self.stream = stream
        self.running: set[str] = set()
        self.bar = None

    def __getstate__(self):  # Tune pickles its callbacks with the experiment: not the terminal
        return {**self.__dict__, "stream": None, "bar": None}

    def setup(self, **info):
        """At the start of a sweep, or of its resumption (the writer has read results.csv back by then)."""
        self.stream = self.stream or sys.stdout
        self.start = self.last_status = time.monotonic()
        self.before = ended_ids(self.writer.rows.values())  # a resumed sweep's
        self.ended = len(self.before)
        if self.stream.isatty():
            self.bar = tqdm(
                total=self.spec.num_samples,
                initial=self.ended,
                file=self.stream,
                bar_format="{n_fmt}/{total_fmt} trials |{bar:20}| {desc}",
                dynamic_ncols=True,
                leave=False,
            )

    def on_experiment_end(self, trials, **info):
        self.close()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self.refresh(force=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended_trial(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended_trial(trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Tune runs the trial again (a lost worker or node, a CUDA error): say why, once."""
        from sweep.results import error_summary

        retries = self.writer.rows[trial.trial_id]["retries"] if trial.trial_id in self.writer.rows else "?"
        self.write(f"trial {trial.trial_id}: {error_summary(trial)}; running it again ({retries} of "
                   f"{self.spec.max_failures} retries)")  # fmt: skip

    def on_step_end(self, iteration, trials, **info):
        self.refresh()

    def ended_trial(self, trial) -> None:
        self.running.discard(trial.trial_id)
        if trial.trial_id in self.before:
            return
        self.ended += 1
        self.write(self.trial_line(self.writer.rows[trial.trial_id]))
        if self.bar is not None:
            self.bar.update(1)
        self.refresh(force=True)

    def trial_line(self, row: dict) -> str:
        params = " ".join(f"{name}={format_value(row[name])}" for name in self.spec.params)
        metric, unit = self.spec.metric, self.spec.unit
        score = f"no {metric}"
        if row[metric] is not None:
            score = f"{metric} {self.spec.metric_text(row[metric])} ({unit} {row['best_epoch']})"
        status = row["status"] if row["status"] != "error" else f"FAILED: {row['error']}"
        width = len(str(self.spec.num_samples))
        length = (
            f"{row['epochs']}/{self.spec.max_epochs} epochs" if self.spec.max_epochs else f"{row['epochs']} {unit}s"
        )
        number = f"[{self.ended:{width}}/{self.spec.num_samples}]"
        return f"{number} trial {row['trial_id']}  {params}  {score}  {length}  {status}"

    def status(self) -> str:
        rows = self.writer.rows.values()
        elapsed = time.monotonic() - self.start
        parts = [
            f"{len(self.running)} running",
            f"{sum(r['status'] == 'stopped early' for r in rows)} stopped early",
            f"{sum(r['status'] == 'error' for r in rows)} failed",
        ]
        best = self.writer.best_row()
        if best is not None:
            parts.append(
                f"best {self.spec.metric} {self.spec.metric_text(best[self.spec.metric])} (trial {best['trial_id']})"
            )
        parts.append(f"{tqdm.format_interval(elapsed)} elapsed")
        ended_here = self.ended - len(self.before)
        if 0 < ended_here and self.ended < self.spec.num_samples:
            left = elapsed / ended_here * (self.spec.num_samples - self.ended)
            parts.append(f"~{tqdm.format_interval(left)} left")
        return ", ".join(parts)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.bar is not None:
            if force or now - self.last_status >= REDRAW_EVERY_S:
                self.bar.set_description_str(self.status())  # redraws
                self.last_status = now
        elif now - self.last_status >= STATUS_EVERY_S:
            self.write(f"[{self.ended}/{self.spec.num_samples} trials] {self.status()}")
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
