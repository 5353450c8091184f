"""Put on PYTHONPATH of a trial's program: records what the program logs with W&B, for the sweep.

Python imports `sitecustomize` at start-up. When the program then imports `wandb`, public functions are
wrapped, and each call W&B took is appended as one JSON line to the file named by SWEEP_WANDB_LOG (the
trial reads that file as it grows; `sweep/trials/program_run.py` rebuilds W&B's history and summary from it):

- `wandb.init`: the program uses W&B (its name=value lines on stdout are then not read), and the run's id;
  its `run.summary` (and `wandb.summary`) becomes a `SummaryRecorder`, which records each write;
- `wandb.Run.log`, through which every `wandb.log`/`run.log` goes (Lightning's WandbLogger too);
- `wandb.Run.define_metric` (a metric's summary may be its min, max, ...);
- with `sync_tensorboard=True`: the `add_scalar` calls of the TensorBoard writers W&B watches (see
  `watch_tensorboard`).

Each line names the run it belongs to: a program may start runs other than the agent's. W&B itself runs
unchanged. Any other `sitecustomize` on the path runs after this.

The program's own Python imports this, whatever its version: the code keeps to what Python 3.6 runs (no
annotations such as `float | None`, which 3.9 and older evaluate and fail on, no walrus), because Python
drops a sitecustomize that fails to import with one line on stderr, and with it the user's own
sitecustomize, which this runs, and the records the trial needs.
"""

import importlib.machinery
import importlib.util
import inspect
import json
import math
import numbers
import os
import re
import socket
import struct
import sys
import time
import weakref

LOG = os.environ.get("SWEEP_WANDB_LOG")
# W&B reads a TensorBoard writer's event files from the directories its patched writers announce; these are
# the writers whose scalars reach its history: writer -> (run id, log directory).
TENSORBOARD_WRITERS = weakref.WeakKeyDictionary()
WRAPPED_WRITER_CLASSES = set()


def record(line):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())  # one write: lines of concurrent writers stay whole
    finally:
        os.close(fd)


def number(value):
    """A logged value as a float, where it is one number: Python's, numpy's, a one-element tensor; else None."""
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


def scalars(data, path=()):
    """The numbers of a logged dict, each with its path of keys (W&B keeps {"a": {"b": 1}} apart from
    {"a.b": 1} in its summary, and shows both as "a.b" in its history)."""
    found = []
    for key, value in data.items():
        if isinstance(value, dict):
            found += scalars(value, path + (str(key),))
        elif number(value) is not None:
            found.append([list(path) + [str(key)], number(value)])
    return found


def jsonable(value):
    """A summary value as JSON: numbers as floats, mappings and lists kept, any other object (an image, a
    table) as a mapping naming its type, as W&B keeps such a value as a mapping that describes it."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if number(value) is not None:
        return number(value)
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return {"_type": type(value).__name__}


class SummaryRecorder:
    """`run.summary` once the run has started: W&B's own summary object, each write recorded after W&B took
    it. Reads go to W&B's object; a nested mapping read from it is wrapped too (`run.summary["a"]["b"] = 1`)."""

    def __init__(self, summary, run_id, path=()):
        object.__setattr__(self, "_wandb_summary", summary)
        object.__setattr__(self, "_run_id", run_id)
        object.__setattr__(self, "_path", tuple(path))

    def _wrap(self, key, value):
        if callable(getattr(value, "update", None)) and callable(getattr(value, "keys", None)):
            return SummaryRecorder(value, self._run_id, self._path + (key,))
        return value

    def update(self, values):
        self._wandb_summary.update(values)
        items = [[list(self._path) + [str(key)], jsonable(value)] for key, value in dict(values).items()]
        record({"run": self._run_id, "summary": items})

    def __setitem__(self, key, value):
        self.update({key: value})

    __setattr__ = __setitem__

    def __delitem__(self, key):
        del self._wandb_summary[key]
        record({"run": self._run_id, "summary_remove": list(self._path) + [str(key)]})

    __delattr__ = __delitem__

    def __getitem__(self, key):
        return self._wrap(key, self._wandb_summary[key])

    def __getattr__(self, name):  # W&B's summary reads keys as attributes too
        summary = self.__dict__.get("_wandb_summary")
        if summary is None:  # a copy being made, before its __init__
            raise AttributeError(name)
        return self._wrap(name, getattr(summary, name))

    def keys(self):
        return self._wandb_summary.keys()

    def get(self, key, default=None):
        return self._wandb_summary.get(key, default)

    def __repr__(self):
        return repr(self._wandb_summary)


def float32(value):
    """A scalar as a TensorBoard event file holds it (`simple_value` is a 32-bit float), as W&B reads it."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:  # beyond a 32-bit float's range: infinite there
        return math.copysign(math.inf, value)


def watch_tensorboard(wandb):
    """With sync_tensorboard=True (or wandb.tensorboard.patch()), W&B learns the log directory of each
    TensorBoard writer created while it is patched, and reads the scalars from its event files; these
    writers' `add_scalar` calls, the scalars W&B will read, are recorded (each with the writer's directory,
    as W&B prefixes a tag with it when there are several)."""
    hostname = socket.gethostname()
    for module_name in ("tensorboardX.writer", "torch.utils.tensorboard.writer"):  # the writers W&B patches
        writer_class = getattr(sys.modules.get(module_name), "SummaryWriter", None)
        if writer_class is None or writer_class in WRAPPED_WRITER_CLASSES:
            continue
        WRAPPED_WRITER_CLASSES.add(writer_class)
        make, add_scalar = writer_class.__init__, writer_class.add_scalar

        def make_and_watch(self, *args, _make=make, **kwargs):
            _make(self, *args, **kwargs)
            if not (wandb.patched.get("tensorboard") and wandb.run is not None):  # as W&B's patched writer decides
                return
            try:
                logdir = os.path.abspath(getattr(self, "log_dir", None) or self.logdir)  # torch's, tensorboardX's
            except Exception as exc:  # another version's writer: the trial says so, the program goes on
                record({"error": "cannot read the TensorBoard scalars W&B syncs: {!r}".format(exc)})
                return
            # W&B's root for a writer's default directory (runs/DATE_HOST): the tags get no prefix.
            default = re.search(r"-\d+_{}".format(re.escape(hostname)), logdir)
            root = logdir[: default.end()] if default else ""
            TENSORBOARD_WRITERS[self] = (wandb.run.id, logdir)
            record({"run": wandb.run.id, "tb_writer": logdir, "root": root, "time": time.time()})

        def add_scalar_and_record(self, tag, scalar_value, global_step=None, *args, _add=add_scalar, **kwargs):
            result = _add(self, tag, scalar_value, global_step, *args, **kwargs)
            if self in TENSORBOARD_WRITERS and number(scalar_value) is not None:
                run_id, logdir = TENSORBOARD_WRITERS[self]
                value = number(scalar_value)
                line = {"run": run_id, "tb": logdir, "tag": tag, "step": int(global_step or 0)}
                record(dict(line, value=value if kwargs.get("double_precision") else float32(value)))
            return result

        writer_class.__init__ = make_and_watch
        writer_class.add_scalar = add_scalar_and_record


def patch(wandb):
    init, log, define_metric = wandb.init, wandb.Run.log, wandb.Run.define_metric
    define_metric_parameters = inspect.signature(define_metric)

    def init_and_record(*args, **kwargs):
        run = init(*args, **kwargs)
        original = getattr(run, "summary", None)
        if original is not None and not isinstance(original, SummaryRecorder):  # a run returned again keeps its own
            run.summary = SummaryRecorder(original, run.id)
            if getattr(wandb, "summary", None) is original:
                wandb.summary = run.summary
        if getattr(wandb, "patched", {}).get("tensorboard"):
            watch_tensorboard(wandb)
        record({"init": getattr(run, "id", None)})
        return run

    def log_and_record(self, data, step=None, commit=None, *args, **kwargs):
        result = log(self, data, step, commit, *args, **kwargs)
        # While TensorBoard is synced, W&B ignores a log's step (wandb_run.py, _partial_history_callback).
        if getattr(wandb, "patched", {}).get("tensorboard"):
            step = None
        record({"run": self.id, "data": scalars(data), "step": step, "commit": commit})
        return result

    def define_metric_and_record(self, name, *args, **kwargs):
        metric = define_metric(self, name, *args, **kwargs)
        overwrite = define_metric_parameters.bind(self, name, *args, **kwargs).arguments.get("overwrite")
        record({
            "run": self.id,
            "define_metric": metric.name,
            "step_metric": metric.step_metric,
            "step_sync": bool(metric.step_sync),
            "summary_ops": list(metric.summary or ()),
            "overwrite": bool(overwrite),
        })  # fmt: skip
        return metric

    wandb.init = init_and_record
    wandb.Run.log = log_and_record
    wandb.Run.define_metric = define_metric_and_record


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
            except Exception as exc:  # a wandb without wandb.init, wandb.Run.log, ...: the trial says so
                version = getattr(module, "__version__", "?")
                record({"error": "cannot read wandb.log calls of wandb {}: {}".format(version, exc)})

        spec.loader.exec_module = exec_and_patch
        return spec


def run_next_sitecustomize():
    here = os.path.dirname(os.path.abspath(__file__))
    others = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if LOG:
    sys.meta_path.insert(0, WandbFinder())
run_next_sitecustomize()
