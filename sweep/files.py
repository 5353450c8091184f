"""The files of an experiment directory that we write, by name, and how: a lean module (no torch, no
Ray), so that `sweep report` and `sweep dashboard` start fast."""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_CSV = "results.csv"  # a row per trial
EPOCHS_CSV = "epochs.csv"  # a line per trial and epoch
BEST_CONFIG = "best_config.yaml"  # the best trial's complete run config
SPEC_FILE = "sweep.yaml"  # the resolved spec, flags applied: what this experiment directory ran
OPTUNA_JOURNAL = "optuna.journal"  # the Optuna study, for optuna-dashboard
REPORT_HTML = "report.html"
ENDED = ("completed", "stopped early", "error", "diverged")  # results.csv statuses that a resumed sweep keeps


def write_atomically(path: Path, text: str) -> None:
    """A reader (the report, mid-sweep) or a kill mid-write never sees half a file: write aside, rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def parse_cell(text: str):
    """A parameter's value as results.csv writes it: an int, a float, or the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
