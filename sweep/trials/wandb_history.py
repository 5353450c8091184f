"""A W&B run's history and summary as W&B itself makes them, from the hook's records of what a program logs
(sweep/trials/wandb_hook/sitecustomize.py): the rows W&B commits, at the steps it gives them, and the
summary W&B keeps, which a sweep's search reads of a finished run. wandb-core's rules, in Python.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace

# What wandb-core does with a run's logs (core/internal/stream/handler.go, runsummary/, runmetric/,
# tensorboard/ in wandb's repository; wandb 0.31 runs it as its `wandb-core` binary).
SUMMARY_STATISTICS = ("last", "first", "max", "min", "mean")  # what define_metric(summary=...) may ask for
ROOT_GUESS_S = 10.0  # wandb-core waits this long for a second TensorBoard directory to guess their root


@dataclass
class MetricSummary:
    """One key's summary (runsummary/metricsummary.go): its last value, or, where define_metric asked for
    them, a mapping such as {"min": x}; an explicit `run.summary[key] = v` sets it until the key is logged
    again, and drops the statistics asked for."""

    latest: object = None
    first: object = None
    min: float = 0.0
    max: float = 0.0
    total: float = 0.0
    count: int = 0
    track: frozenset = frozenset()  # statistics asked for; none: the last value
    no_summary: bool = False  # define_metric(summary="none")
    has_data: bool = False

    def log(self, value: float) -> None:
        self.latest = value
        if not self.has_data:
            self.first = value
        self.has_data = True
        self.min, self.max = (min(self.min, value), max(self.max, value)) if self.count else (value, value)
        self.total += value
        self.count += 1

    def set(self, value) -> None:
        self.latest, self.track, self.has_data = value, frozenset(), True

    def value(self):
        """W&B's summary value, or None where W&B keeps none."""
        if self.no_summary or not self.has_data:
            return None
        if not self.track:
            return self.latest
        mean = self.total / self.count if self.count else math.nan
        statistics = {"last": self.latest, "first": self.first, "max": self.max, "min": self.min, "mean": mean}
        return {name: statistics[name] for name in SUMMARY_STATISTICS if name in self.track}


@dataclass(frozen=True)
class MetricDefinition:
    """What `define_metric` calls said of a metric, merged as wandb-core merges them (definedmetric.go)."""

    step_metric: str = ""
    step_sync: bool = False
    no_summary: bool = False
    track: frozenset = frozenset()

    def with_call(self, step_metric: str | None, step_sync: bool, summary: list[str]) -> MetricDefinition:
        if not summary:  # no summary asked for: the definition's summary stays as it was
            return replace(self, step_metric=step_metric or self.step_metric, step_sync=self.step_sync or step_sync)
        track = self.track | (set(summary) & set(SUMMARY_STATISTICS))
        return MetricDefinition(step_metric or self.step_metric, self.step_sync or step_sync, "none" in summary, track)


@dataclass
class TensorBoardWriter:
    """A TensorBoard writer's log directory, as W&B reads its event files: consecutive scalars of one step
    make one history row (tensorboard.go, convertToRunHistory)."""

    logdir: str
    root: str  # W&B's root for a writer's default directory; '': W&B guesses it from the directories
    created: float
    step: int = 0
    values: dict | None = None  # the scalars of `step` not yet in a row


class History:
    """W&B's history and summary of one run, from the hook's records of what its program logs, by wandb-core's
    rules (handler.go: handlePartialHistorySync, flushPartialHistory):

    - a row is built at W&B's step, which starts at 0; a `log` commits it (and the step grows by one) unless
      it has `commit=False`, or a `step` and no `commit=True`;
    - a `step` above the current one commits the row being built first and becomes the current step; a
      `step` below it is dropped (W&B warns that it ignores it);
    - each committed row carries its step as `_step`, and updates the summary;
    - the row being built at the end is committed then.

    A row holds the numbers logged (nested dicts flattened with '.'); W&B's row also has `_runtime` and
    `_timestamp`, and the logged values that are not numbers (images, strings), which are left out here."""

    def __init__(self):
        self.step = 0
        self.pending: dict | None = None  # the row being built; {} once anything is logged (W&B adds _timestamp)
        # W&B's summary is a tree of keys: {"a": {"b": 1}} and {"a.b": 1} are apart there, "a.b" in a row.
        self.summaries: dict[tuple[str, ...], MetricSummary] = {}  # its leaves, by path
        self.paths: dict[str, tuple[str, ...]] = {}  # a row's key -> its path as logged, where not (key,)
        self.definitions: dict[str, MetricDefinition] = {}
        self.globs: dict[str, MetricDefinition] = {}  # define_metric("val/*"): prefix -> definition
        self.step_values: dict[str, float] = {}  # each step_metric's last logged value
        self.writers: dict[str, TensorBoardWriter] = {}

    def apply(self, line: dict) -> list[dict]:
        """One of the hook's records of the run; returns the rows it commits."""
        if "data" in line:
            data = {}
            for path, value in line["data"]:
                data[".".join(path)] = value
                self.paths[".".join(path)] = tuple(path)
            return self.log(data, line["step"], line["commit"])
        if "summary" in line:
            for path, value in line["summary"]:
                self.summary_at(tuple(path)).set(value)
        elif "summary_remove" in line:
            self.remove_summary(tuple(line["summary_remove"]))
        elif "define_metric" in line:
            self.define_metric(line["define_metric"], line["step_metric"], line["step_sync"], line["summary_ops"],
                               line["overwrite"])  # fmt: skip
        elif "tb_writer" in line:
            self.writers.setdefault(line["tb_writer"], TensorBoardWriter(line["tb_writer"], line["root"], line["time"]))
        elif "tb" in line:
            return self.tensorboard_scalar(line["tb"], line["tag"], line["value"], line["step"])
        return []

    def log(self, data: dict, step: int | None = None, commit: bool | None = None) -> list[dict]:
        committed = []
        if step is not None:
            if step < self.step:
                return []  # W&B drops it
            if step > self.step:
                committed += self.commit(next_step=step)
        data = {key: value for key, value in data.items() if key != "_step"}  # W&B sets _step itself
        self.pending = {**(self.pending or {}), **data}
        if commit if commit is not None else step is None:
            committed += self.commit(next_step=self.step + 1)
        return committed

    def end(self) -> list[dict]:
        """The rows committed when the run ends: the TensorBoard scalars not yet read, then the row being built."""
        committed = []
        for writer in self.writers.values():
            committed += self.emit(writer)
        return committed + self.commit(next_step=self.step + 1)

    def commit(self, next_step: int) -> list[dict]:
        committed = []
        if self.pending is not None:
            row = {**self.pending, "_step": self.step}
            self.apply_definitions(row)
            for key, value in row.items():
                self.summary_at(self.paths.get(key, (key,))).log(value)
            committed.append(row)
        self.pending, self.step = None, next_step
        return committed

    def summary(self) -> dict:
        """W&B's summary of the run, its paths of keys joined with '.' as in the rows."""
        values = {".".join(path): summary.value() for path, summary in self.summaries.items()}
        return {key: value for key, value in values.items() if value is not None}

    def summary_at(self, path: tuple[str, ...]) -> MetricSummary:
        """The summary's leaf at `path`, made as W&B's path tree makes one (pathtree.go, GetOrMakeLeaf): a
        leaf on the way gives way to a mapping, a mapping at `path` to a new leaf."""
        for end in range(1, len(path)):
            self.summaries.pop(path[:end], None)
        if path not in self.summaries:
            for nested in [other for other in self.summaries if other[: len(path)] == path]:
                del self.summaries[nested]
            self.summaries[path] = MetricSummary()
        return self.summaries[path]

    def remove_summary(self, path: tuple[str, ...]) -> None:
        if path in self.summaries:  # its statistics stay, for a later log (runsummary.go, Remove)
            self.summaries[path].latest, self.summaries[path].has_data = None, False
        for nested in [other for other in self.summaries if other[: len(path)] == path and other != path]:
            del self.summaries[nested]

    def define_metric(self, name: str, step_metric: str | None, step_sync: bool, summary: list[str],
                      overwrite: bool) -> None:  # fmt: skip
        definitions, key = (self.globs, name[:-1]) if name.endswith("*") else (self.definitions, name)
        previous = MetricDefinition() if overwrite else definitions.get(key, MetricDefinition())
        definitions[key] = previous.with_call(step_metric, step_sync, summary)
        if step_metric:
            self.step_values.setdefault(step_metric, 0.0)
        if definitions is self.definitions:
            self.configure(name)

    def configure(self, key: str) -> None:
        # W&B finds a defined metric's summary by its name split at each '.' not escaped as '\.' (runmetric.go).
        path = tuple(part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key))
        definition, summary = self.definitions[key], self.summary_at(path)
        summary.no_summary, summary.track = definition.no_summary, definition.track

    def apply_definitions(self, row: dict) -> None:
        """What defined metrics do to a row before it is committed (runmetric.go: UpdateMetrics,
        InsertStepMetrics): a key that matches a glob gets its definition, and a metric with a step_metric
        (and step_sync) gets that metric's last value where the row lacks it."""
        for key in self.step_values.keys() & row.keys():
            self.step_values[key] = row[key]
        for key in row:
            if key.startswith("_") or key in self.definitions:
                continue
            glob = next((prefix for prefix in self.globs if key.startswith(prefix)), None)
            if glob is not None:  # W&B tries its globs in no fixed order; here, in the order defined
                self.definitions[key] = self.globs[glob]
                self.configure(key)
        for key in list(row):
            definition = self.definitions.get(key)
            if definition and definition.step_metric and definition.step_sync and definition.step_metric not in row:
                row[definition.step_metric] = self.step_values.get(definition.step_metric, 0.0)
                self.paths[definition.step_metric] = tuple(definition.step_metric.split("."))

    def tensorboard_scalar(self, logdir: str, tag: str, value: float, step: int) -> list[dict]:
        writer = self.writers[logdir]
        committed = self.emit(writer) if writer.values is not None and writer.step != step else []
        writer.step, writer.values = step, {**(writer.values or {}), tag: value}
        return committed

    def emit(self, writer: TensorBoardWriter) -> list[dict]:
        """A writer's scalars of one step as W&B logs them: one row, with the event's step as `global_step`,
        committed at once (tensorboard/emitter.go). W&B reads event files as they are flushed to disk, so
        how its TensorBoard rows interleave with `wandb.log` rows (their `_step`s) depends on its timing;
        here they come in the order the program wrote them."""
        if writer.values is None:
            return []
        namespace = self.namespace(writer)
        row = {(f"{namespace}/{tag}" if namespace else tag): value for tag, value in writer.values.items()}
        writer.values = None
        return self.log({**row, "global_step": writer.step})

    def namespace(self, writer: TensorBoardWriter) -> str:
        """The prefix W&B gives a writer's tags: its directory under their root. W&B takes the root of a
        writer's default directory (runs/DATE_HOST) as it is, or guesses it as the common path of the first
        two directories, the first waiting up to ROOT_GUESS_S for the second (tensorboard.go,
        rootdirguesser.go). Here that is decided when a row is made: a row of the first writer made before
        the second exists has no prefix, where W&B would have waited for it."""
        if writer.root:
            return writer.logdir[len(writer.root) :].strip("/")
        writers = list(self.writers.values())
        if len(writers) < 2 or (writer is writers[0] and writers[1].created - writers[0].created > ROOT_GUESS_S):
            return ""  # W&B then uses the working directory as the root, and no prefix
        relative = os.path.relpath(writer.logdir, os.path.commonpath([writers[0].logdir, writers[1].logdir]))
        return "" if relative == "." or relative.startswith("..") else relative.replace(os.sep, "/")
