"""`run_sweep` and `resume_sweep`: a sweep on Ray Tune, each run, resume, edit or warm start one new Tune fit
over the sweep's record and its Optuna study (rebuilt from the record), never Tune's own restore.

Tune keeps its bookkeeping in a temporary directory of the driver's, deleted after the fit: the
experiment directory holds only the record, its exports and the trials' own directories, and nothing
pickled (a resume needs nothing but the record, after a `mv`, a `cp -r`, or a newer version of sweep). The
driver works in the experiment's local directory; one in object storage is mirrored there and uploaded as
trials end (sweep.record.storage).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sweep.engine.cluster import RayStart, dashboard_text, shipped_program, trial_concurrency
from sweep.record.events import EventLog
from sweep.record.files import CHECKPOINT, SOURCE
from sweep.record.state import ENDED, Status, SweepState, read
from sweep.record.storage import SYNC_EVERY_S, Experiment, local_copy
from sweep.spec.load import load_spec
from sweep.spec.spec import SweepSpec, check_flags, grid_size
from sweep.trials import trials_of
from sweep.views.exports import write_exports, write_tensorboard
from text_recognizer.util import UserError

# Keys of a sweep that an edit cannot change: the record's trials would mean something else.
FIXED_BY_EDIT = {
    "metric": "metric.name",
    "mode": "metric.goal",
    "kind": "program",
    "program": "program/command",
    "base_config": "run",
}


@dataclass
class SweepResult:
    experiment: Experiment
    state: SweepState
    interrupted: bool  # the fit ended before the sweep did (Ctrl-C): a trial is not ended
    report: Future | None = None  # report.html and its PNGs, being drawn while Ray stops
    final_runner: object = None  # our trainer's final run's actor, for `run --final`


def run_sweep(spec: SweepSpec, experiment: Experiment, *, ray_start: RayStart, flags: dict, warm_start: dict,
              verbose: bool = False, final: bool = False) -> SweepResult:  # fmt: skip
    """A new sweep into `experiment` (claimed, empty). `flags`: the command line's settings over the
    file's; `warm_start`: {location: its trials} of earlier experiments (warm_trials), history to start from."""
    kind = trials_of(spec)
    data = kind.load()  # decoded while Ray starts
    shutil.copyfile(spec.path, experiment.local / SOURCE)
    state = SweepState(spec={})
    log = EventLog(experiment.local, listener=state.apply)
    log.write("sweep", spec=spec.resolved(), source=SOURCE, flags=flags, cwd=os.getcwd(), address=ray_start.address)
    for earlier, trials in warm_start.items():
        first = len(state.warm)
        log.write("warm_start", **{"from": earlier}, trials=[{**t, "number": first + i} for i, t in enumerate(trials)])
    context = ray_start.result()
    runner = kind.final_runner() if final else None
    result = fit(spec, experiment, log, state, context, verbose, data, doing="")
    return dataclasses.replace(result, final_runner=runner)


def warm_trials(earlier: str, spec: SweepSpec) -> list[dict]:
    """The ended trials of an earlier sweep (a directory or a URI) whose values this sweep's space can give,
    as its study's first trials."""
    experiment, local = local_copy(earlier)
    before = read(local, live=False)
    experiment.close(upload=False)
    where = f"--warm-start {experiment.uri}"
    if (before.metric, before.mode) != (spec.metric, spec.mode) or spec.metric is None:
        raise UserError(
            f"{where}: that sweep {goal(before.metric, before.mode)}, this one {goal(spec.metric, spec.mode)}: its "
            "trials teach this one nothing"
        )
    fitting = [t for t in sorted(before.trials.values(), key=lambda t: t.number)
               if t.status in ENDED and spec.samples_of(t.params) is not None]  # fmt: skip
    return [
        {"params": t.params, "status": t.status.value, "summary": t.summary,
         "results": [{k: r[k] for k in ("step", "metrics", "step_time_s", "node", "gpus", "time")} for r in t.results],
         "origin": f"{experiment.uri} trial {t.number}"}
        for t in fitting
    ]  # fmt: skip


def goal(metric: str | None, mode: str) -> str:
    return f"{'maximizes' if mode == 'max' else 'minimizes'} {metric}" if metric else "has no metric"


def spec_from_record(experiment_dir: Path, state: SweepState, source: Path | None = None) -> SweepSpec:
    """The sweep's spec from its directory alone: its copy of the sweep file (or an edited file, `source`),
    read from where the sweep first ran, with the command line's settings it ran with."""
    # A program's directory: where the sweep first ran, or here where that is gone (a resume on a new
    # cluster, as KubeRay's retry of a Ray Job, runs in a new copy of the job's working_dir).
    cwd = state.cwd if Path(state.cwd).is_dir() else os.getcwd()
    spec = load_spec(str(source or experiment_dir / state.source_copy), cwd=cwd)
    flags = {k: v for k, v in state.flags.items() if source is None or k != "num_samples"}  # an edit says its own
    spec = check_flags(spec, flags)
    spec = dataclasses.replace(spec, name=state.spec["name"], path=str(source) if source else state.spec["source"])
    return spec if source is not None else dataclasses.replace(spec, num_samples=state.num_samples)


def same_sweep(resolved: dict) -> dict:
    """What makes two runs the same sweep: all but where its file and its program's directory were (a Ray
    Job that KubeRay retries runs in a new copy of its working_dir)."""
    program = resolved["program"] and {**resolved["program"], "cwd": None}
    return {**resolved, "source": None, "program": program}


def edit_changes(before: dict, after: dict, what: str = "the edited file's") -> list[str]:
    """What an edit changes, one line each; a change that cannot apply is one error naming its key."""
    before, after = same_sweep(before), same_sweep(after)
    for key, name in FIXED_BY_EDIT.items():
        if before[key] != after[key]:
            raise UserError(f"{what} '{name}' differs from the sweep's ({before[key]!r} -> {after[key]!r}): "
                            "its trials would mean something else; start a new sweep, warm-started from this one "
                            "(`sweep run FILE --warm-start DIR`)")  # fmt: skip
    changes = []
    for name in sorted(set(before["params"]) | set(after["params"])):
        was, now = before["params"].get(name), after["params"].get(name)
        if was != now:
            was, now = (p["source"] if p else "not searched" for p in (was, now))
            changes.append(f"{name}: {was} -> {now}")
    for key in ("num_samples", "early_stopping", "target", "method", "seed", "max_concurrent", "stopped_trials",
                "gpus_per_trial", "cpus_per_trial", "checkpoint_interval_s", "max_failures"):  # fmt: skip
        if before[key] != after[key]:
            changes.append(f"{key}: {before[key]} -> {after[key]}")
    return changes


def resume_sweep(experiment: Experiment, *, grow_to: int | None = None, edited: str | None = None,
                 address: str | None = None, verbose: bool = False) -> SweepResult | None:  # fmt: skip
    """Continue a sweep whose driver ended before it did (a kill, Ctrl-C, a reboot), grow it to `grow_to`
    trials, or go on with an edited sweep file: a new Tune fit over the record. Ended trials are history;
    interrupted ones continue from their checkpoints. Everything is checked, and Ray started, before the
    record changes. None when there is nothing to do (no Ray started)."""
    state = read(experiment.local, live=False)  # the caller holds the directory: no driver runs it
    spec = spec_from_record(experiment.local, state, source=Path(edited) if edited else None)
    what = "the edited file's" if edited else f"the sweep's file ({state.source_copy}), read here,"
    changes = edit_changes(state.spec, spec.resolved(), what)
    if edited is not None:
        print(f"sweep '{spec.name}': edited ({'; '.join(changes) or 'nothing changed'})", flush=True)
    elif changes:  # this version of sweep, or this directory, reads the file otherwise than the sweep's first run
        print(f"sweep '{spec.name}': warning: {what} differs from the record ({'; '.join(changes)}): "
              "going on with it as read now", file=sys.stderr, flush=True)  # fmt: skip
    if grow_to is not None:
        if grow_to <= len(state.trials):
            raise UserError(f"--num-samples {grow_to}: the sweep has {len(state.trials)} trials already")
        if spec.method == "grid" and grow_to > grid_size(spec.params):
            raise UserError(f"--num-samples {grow_to}: the grid has {grid_size(spec.params)} points, and a grid runs "
                            "each once (as W&B's); add values with an edited file (`--spec EDITED.yaml`)")  # fmt: skip
        spec = dataclasses.replace(spec, num_samples=grow_to)
    if not state.unfinished() and spec.num_samples <= state.num_samples and edited is None:
        return None
    kind = trials_of(spec)
    data = kind.load()
    shipped = shipped_program(spec, experiment.remote is not None)
    # The cluster to continue on: the one named, else a Ray Job's own (RAY_ADDRESS: after KubeRay's retry on
    # a new cluster, the one the sweep ran on is gone), else the one it ran on, else a local Ray.
    address = address or os.environ.get("RAY_ADDRESS") or state.address
    ray_start = RayStart(address, log_to_driver=verbose, runtime_env=shipped)
    try:
        context = ray_start.result()
        log = EventLog(experiment.local, listener=state.apply)
        if edited is not None:
            record_edit(experiment.local, state, log, spec, Path(edited), changes)
        log.write("resume", num_samples=spec.num_samples)
        doing = f"resuming ({len(state.ended())} of {len(state.trials)} trials ended) "
        return fit(spec, experiment, log, state, context, verbose, data, doing=doing)
    finally:
        ray_start.shutdown()


def record_edit(experiment_dir: Path, state: SweepState, log: EventLog, spec: SweepSpec, edited: Path,
                changes: list[str]) -> None:  # fmt: skip
    """The sweep goes on with an edited file: kept beside the first (source-2.yaml, ...), and written in the
    record. Interrupted trials whose values the new space cannot give end there, stopped."""
    copy = f"source-{len(state.edits) + 2}.yaml"
    shutil.copyfile(edited, experiment_dir / copy)
    next_trial = len(state.warm) + len(state.trials)
    log.write("edit", spec=spec.resolved(), source=str(edited), source_copy=copy, changes=changes,
              next_trial=next_trial)  # fmt: skip
    for trial in state.trials.values():
        if trial.status not in ENDED and spec.samples_of(trial.params) is None:
            log.write("end", trial=trial.number, status=Status.STOPPED.value, reason="outside the edited space",
                      summary=trial.summary)  # fmt: skip


def fit(spec: SweepSpec, experiment: Experiment, log: EventLog, state: SweepState, context, verbose: bool, data,
        doing: str) -> SweepResult:  # fmt: skip
    """One Tune fit: the trials the sweep still needs, on the Ray that `context` joined."""
    import ray
    from ray import tune

    from sweep.engine.study import open_study
    from sweep.engine.sweep_run import SweepRun
    from sweep.engine.tune_adapters import RecordCallback, StudyScheduler, StudySearcher
    from sweep.views.progress import ProgressView

    kind = trials_of(spec)
    experiment_dir = experiment.local
    # Ended trials have nothing to continue: a driver killed between a trial's end (uploaded first) and its
    # checkpoint's removal, or an edit that stopped an interrupted trial, left one.
    experiment.remove_left_files([trial.number for trial in state.ended()], CHECKPOINT)
    study = open_study(experiment_dir, state, spec)
    view = ProgressView(state, on_refresh=lambda: experiment.push(every_s=SYNC_EVERY_S, beat=True))

    def trial_asked(number: int, new: bool) -> None:
        if new:  # a new trial starts from nothing, whatever a lost run left under its number
            experiment.remove_trial_file(number, CHECKPOINT)
        # The record in object storage knows the trial before its worker writes there: a driver lost now
        # leaves a record whose trials' numbers are never asked again for others.
        experiment.push()

    def trial_ended(trial) -> None:
        write_exports(experiment_dir, state, experiment.uri)
        write_tensorboard(experiment_dir, trial)
        experiment.push()  # its end in the bucket's record before its checkpoint goes: a kill between loses nothing
        experiment.remove_trial_file(trial.number, CHECKPOINT)  # nothing to continue

    run = SweepRun(spec, log, state, study, kind, view, on_asked=trial_asked, on_end=trial_ended)
    concurrency = trial_concurrency(spec, ray.cluster_resources(), max(1, run.to_run))
    goal = f"{'maximizing' if spec.mode == 'max' else 'minimizing'} {spec.metric}" if spec.metric else "no metric"
    target = (
        f" until {spec.metric} {'>=' if spec.mode == 'max' else '<='} {spec.target:g}"
        if spec.target is not None
        else ""
    )
    early = "on" if run.rungs else "off"
    print(f"sweep '{spec.name}': {doing}{spec.num_samples} trials, {concurrency} at a time, {spec.method} search "
          f"{goal}{target}, early stopping {early}; experiment directory {experiment}{dashboard_text(context)}",
          flush=True)  # fmt: skip
    write_exports(experiment_dir, state, experiment.uri)
    trainable = tune.with_resources(kind.trainable(experiment.uri, verbose, data),
                                    {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})  # fmt: skip
    # Tune's newer reporter prints its start box even at verbose=0; its default loggers write files nobody
    # reads here. Tune reads these variables (Ray 2.60's) when the fit starts.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    tune_dir = tempfile.mkdtemp(prefix="sweep-tune-")
    try:
        if run.to_run:
            tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=StudySearcher(run),
                    scheduler=StudyScheduler(run),
                    num_samples=run.to_run,
                    max_concurrent_trials=concurrency,
                    reuse_actors=True,  # one worker process serves trial after trial: imports are paid once
                ),
                run_config=tune.RunConfig(
                    name="sweep",
                    storage_path=tune_dir,
                    callbacks=[RecordCallback(run)],
                    verbose=0,  # our view; --verbose adds the trials' own output
                    # A lost worker or node: the trial runs again, from its checkpoint, on any node with room.
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                ),
            ).fit()
    finally:
        view.close()
        shutil.rmtree(tune_dir, ignore_errors=True)
    interrupted = state.unfinished()  # Tune ends a fit early on Ctrl-C, and says so only in its log
    log.write("stop", interrupted=interrupted)
    write_exports(experiment_dir, state, experiment.uri)
    experiment.push()
    report = None
    if state.trials:  # drawn while Ray stops (~1.5 s of waiting for its processes): the sweep ends no later
        from sweep.views.report import write_report

        executor = ThreadPoolExecutor(1)
        report = executor.submit(write_report, experiment_dir, state)
        executor.shutdown(wait=False)  # returns now; the thread ends with the report
    return SweepResult(experiment, state, interrupted, report)
