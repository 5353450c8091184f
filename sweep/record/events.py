"""events.jsonl: a sweep's record, one JSON object a line, appended by its driver and never rewritten.

    {"event": "sweep", "time": ..., "spec": {...}, "source": "source.yaml", "flags": {...}, "cwd": DIR,
     "address": RAY_ADDRESS_OR_NULL}                                 the start: the resolved spec, and how it ran
    {"event": "warm_start", "from": DIR, "trials": [...]}       earlier experiments' trials, as history
    {"event": "trial", "trial": 3, "params": {...}}           Optuna's trial 3 asked, with these values
    {"event": "start", "trial": 3, "attempt": 1}                 a worker runs it (again, after a retry)
    {"event": "result", "trial": 3, "step": 1, "metrics": {...}, "step_time_s": ..., "node": ..., "gpus": "0",
     "replayed": true}                              (replayed: sent again by a trial continued from its checkpoint)
    {"event": "retry", "trial": 3, "reason": ...}                its worker or node was lost
    {"event": "end", "trial": 3, "status": "completed", "reason": "", "summary": {...}}
    {"event": "stop", "interrupted": false}                      a run or resume ended
    {"event": "resume", "num_samples": 16}                       a resume started
    {"event": "edit", "spec": {...}, "source": EDITED_FILE, "source_copy": "source-2.yaml", "changes": [...],
     "next_trial": 6}                                             a resume with an edited file

Native JSON types only: a value that is not a finite number is written as null. A trial's end is on disk
(fsync) before the driver tells Optuna. A line torn by a kill is the last one: the reader skips it, and
the next writer cuts it off before it appends.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from sweep.record.files import EVENTS
from text_recognizer.util import UserError

SYNCED = {"sweep", "edit", "warm_start", "resume", "end", "stop"}  # on disk before the driver goes on


def plain(value):
    """JSON's own types: non-finite floats as None, tuples as lists, numpy scalars as Python's."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a numpy scalar
        return plain(value.item())
    return value


def read_events(experiment_dir: Path) -> list[dict]:
    """Every event of the record, in order; [] where there is none. A last line that a kill cut short is
    skipped; any other line that is not JSON is one error naming the file and the line."""
    path = experiment_dir / EVENTS
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # no newline after it: the write was cut off
                break
            raise UserError(f"{path}: line {number} is not a JSON event; the record is damaged") from None
    return events


class EventLog:
    """The driver's end of events.jsonl: appends, and applies each event to `listener` (the live state)."""

    def __init__(self, experiment_dir: Path, listener=None):
        self.path = experiment_dir / EVENTS
        self.listener = listener
        if self.path.exists():  # cut off a line that a kill left unfinished, so that the next one starts clean
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                os.truncate(self.path, data.rfind(b"\n") + 1)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self.file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, event: str, **fields) -> dict:
        record = {"event": event, "time": time.time(), **plain(fields)}
        self.file.write(json.dumps(record, allow_nan=False) + "\n")
        self.file.flush()
        if event in SYNCED:
            os.fsync(self.file.fileno())
        if self.listener is not None:
            self.listener(record)
        return record

    def close(self) -> None:
        self.file.close()
