"""Put on PYTHONPATH of a trial's program: records what the program logs with W&B, for the sweep.

Python imports `sitecustomize` at start-up. When the program then imports `wandb`, two public functions
are wrapped: `wandb.init` (the program uses W&B: its name=value lines on stdout are then not read) and
`wandb.Run.log`, through which every `wandb.log`/`run.log` goes (Lightning's WandbLogger too). Each call
is appended, after W&B took it, as one JSON line to the file named by SWEEP_WANDB_LOG; the trial reads
that file as it grows. W&B itself runs unchanged. Any other `sitecustomize` on the path runs after this.
"""

import importlib.machinery
import importlib.util
import json
import numbers
import os
import sys

LOG = os.environ.get("SWEEP_WANDB_LOG")


def record(line: dict) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())  # one write: lines of concurrent writers stay whole
    finally:
        os.close(fd)


def number(value) -> float | None:
    """A logged value as a float, where it is one number: Python's, numpy's, a one-element tensor."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # numpy scalars and arrays, torch tensors
    if callable(item):
        try:
            value = item()
        except (ValueError, RuntimeError, TypeError):  # more than one element
            return None
        return number(value) if isinstance(value, numbers.Real) else None
    return None


def scalars(data, prefix: str = "") -> dict:
    """The numbers of a logged dict, nested dicts flattened with '.' as W&B's history does."""
    found = {}
    for key, value in data.items():
        if isinstance(value, dict):
            found.update(scalars(value, f"{prefix}{key}."))
        elif number(value) is not None:
            found[f"{prefix}{key}"] = number(value)
    return found


def patch(wandb) -> None:
    init, log = wandb.init, wandb.Run.log

    def init_and_record(*args, **kwargs):
        run = init(*args, **kwargs)
        record({"init": True})
        return run

    def log_and_record(self, data, step=None, commit=None, *args, **kwargs):
        result = log(self, data, step, commit, *args, **kwargs)
        record({"data": scalars(data), "step": step, "commit": commit})
        return result

    wandb.init = init_and_record
    wandb.Run.log = log_and_record


class WandbFinder:
    """Finds `wandb` as the other finders do, and wraps it as soon as it has been imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "wandb":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            try:
                patch(module)
            except Exception as exc:  # a wandb without wandb.init or wandb.Run.log: the trial says so
                record({"error": f"cannot read wandb.log calls of wandb {getattr(module, '__version__', '?')}: {exc}"})

        spec.loader.exec_module = exec_and_patch
        return spec


def run_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    others = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if LOG:
    sys.meta_path.insert(0, WandbFinder())
run_next_sitecustomize()
