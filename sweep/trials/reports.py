"""What a trial tells its sweep's driver through Tune: each report is one JSON string, because Tune flattens
nested results and adds keys of its own (`done`, `config`, `timestamp`...) that a program's metric names
could collide with.

    a step:  {"step": 3, "metrics": {...}, "step_time_s": 1.2, "node": "...", "gpus": "0"}   (every metric
             it logged; its Ray node and the GPUs it sees; "replayed": true where sent again from a checkpoint)
    the end: {"end": true, "failed": "", "diverged": false, "summary": {...}}   (failed: why, in one line)
"""

from __future__ import annotations

import json
import os

from sweep.record.events import plain

KEY = "sweep"


def step(step: int, metrics: dict, step_time_s: float, node: str) -> dict:
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    report = {"step": step, "metrics": metrics, "step_time_s": step_time_s, "node": node, "gpus": gpus}
    return {KEY: json.dumps(plain(report))}


def replayed(report: dict) -> dict:
    """A step's report sent again by a trial continued from its checkpoint: so marked in the record."""
    return {KEY: json.dumps({**json.loads(report[KEY]), "replayed": True})}


def end(failed: str = "", diverged: bool = False, summary: dict | None = None) -> dict:
    return {KEY: json.dumps(plain({"end": True, "failed": failed, "diverged": diverged, "summary": summary or {}}))}


def read(result: dict | None) -> dict | None:
    """A trial's report out of Tune's result (None: Tune's own, or none)."""
    if not result or KEY not in result:
        return None
    return json.loads(result[KEY])
