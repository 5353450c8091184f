"""`run_sweep(spec) -> SweepResult`: Ray Tune + Optuna + ASHA over `train()`, and the final run."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from sweep.cluster import RayStart, dashboard_text, trial_concurrency
from sweep.files import BEST_CONFIG, CHECKPOINT_FILE, LOCK, SPEC_FILE, ended_ids, restoring, write_atomically
from sweep.params import IndexedChoice
from sweep.results import ResultsWriter, best_row, load_rows, ordered, recorded_results
from sweep.space import SweepSpec
from text_recognizer import datasets
from text_recognizer.config import resolve_config
from text_recognizer.datasets import Splits
from text_recognizer.util import UserError, load_yaml_mapping

MAX_ITERATIONS = 10**9  # ASHA's max_t for a program, whose number of logged values is not known


@dataclass
class SweepResult:
    experiment_dir: Path
    rows: list[dict]  # one per trial, in start order (see results.csv)
    best: dict | None  # the best row, None when no trial reported a metric
    # Ctrl-C, or the driver failed: the fit ended before the sweep did, which `resume` continues
    interrupted: bool = False
    report: Future | None = None  # report.html and its PNGs, being written while Ray stops
    final_runner: object = None  # a FinalRunner actor, for `run --final`

    @property
    def stopped_early(self) -> int:
        return sum(row["status"] == "stopped early" for row in self.rows)

    @property
    def errors(self) -> list[dict]:
        return [row for row in self.rows if row["status"] == "error"]


def unfinished(rows: list[dict], spec: SweepSpec) -> bool:
    """Whether a sweep with these rows has more to do: a trial was cut off, or fewer trials ran than it asks
    for and its target was not reached. After a fit: it was interrupted (Ctrl-C may come when no trial is
    running, and Tune says so only in a log line)."""
    best = best_row(rows, spec)
    target_reached = best is not None and spec.reached_target(best[spec.metric])
    return len(ended_ids(rows)) < len(rows) or (len(rows) < spec.num_samples and not target_reached)


def load_splits(config: dict) -> Splits:
    """The run's dataset as numpy arrays (no torch in the driver)."""
    return datasets.load_splits(config["data_class"], config["data_dir"])


def save_spec(spec: SweepSpec, experiment_dir: Path, argv: list[str]) -> None:
    write_atomically(experiment_dir / SPEC_FILE, yaml.safe_dump(resolved_spec(spec, argv), sort_keys=False))


def resolved_spec(spec: SweepSpec, argv: list[str]) -> dict:
    """What sweep.yaml holds: the spec with the command line's flags applied, in plain YAML types."""
    from optuna.distributions import distribution_to_json

    resolved = {
        "source": spec.path,
        "cwd": os.getcwd(),  # where `source` and the command's relative paths are
        "command": ["python", "-m", "sweep", *argv],
        "name": spec.name,
        "metric": spec.metric,
        "mode": spec.mode,
        "target": spec.target,
        "method": spec.method,
        "num_samples": spec.num_samples,
        "seed": spec.seed,
        "max_concurrent": spec.max_concurrent,
        "stopped_trials": spec.stopped_trials,
        "asha": spec.asha,
        "gpus_per_trial": spec.gpus_per_trial,
        "cpus_per_trial": spec.cpus_per_trial,
        "checkpoint_interval_s": spec.checkpoint_interval_s,
        "max_failures": spec.max_failures,
        "base_config": spec.base_config,
        "params": {
            name: {
                "source": p.source,
                "optuna": json.loads(distribution_to_json(p.distribution)),
                **(
                    {"sampled": "index" if isinstance(p.from_quantile, IndexedChoice) else "quantile"}
                    if p.from_quantile
                    else {}
                ),
                **spec.columns["params"][name],  # types and values: how results.csv is read back
            }
            for name, p in spec.params.items()
        },
        "metrics": list(spec.metrics),
        # The program and its command; not the environment, which is the driver's of the moment.
        "program": {k: v for k, v in dataclasses.asdict(spec.program).items() if k != "environ"}
        if spec.program
        else None,
    }
    return yaml.safe_load(yaml.safe_dump(resolved, sort_keys=False))


def run_sweep(
    spec: SweepSpec,
    experiment_dir: Path,
    *,
    address: str | None = None,
    argv: list[str] | None = None,
    ray_start: RayStart | None = None,
    verbose: bool = False,
    final: bool = False,
) -> SweepResult:
    """Run the sweep into `experiment_dir` (new, or made empty by `files.claim`) on a local Ray or the
    cluster at `address`, or on the one `ray_start` is starting, which the caller then shuts down.
    `verbose`: the trials' own output too. `final`: a FinalRunner is started with the sweep (our trainer's
    final run then starts at once), in the result."""
    if experiment_dir.exists() and [p.name for p in experiment_dir.iterdir()] not in ([], [LOCK]):
        raise UserError(f"{experiment_dir} is not empty: continue its sweep with `python -m sweep resume`")
    starting = ray_start or RayStart(address, log_to_driver=verbose)
    try:
        splits = None if spec.program else load_splits(spec.base_config)  # decoded while Ray starts
        context = starting.result()
        runner = None
        if final and not spec.program:
            import ray

            runner = ray.remote(num_cpus=0)(FinalRunner).remote()
        result = sweep_on_ray(spec, context, experiment_dir, verbose, "run", argv or [], splits)
        return dataclasses.replace(result, final_runner=runner)
    finally:
        if ray_start is None:
            starting.shutdown()


def resume_sweep(
    spec: SweepSpec, experiment_dir: Path, *, grow_to: int | None = None, address: str | None = None, verbose=False
) -> tuple[SweepSpec, SweepResult | None]:
    """Continue a sweep whose driver ended before it did (Tune's restore: ended trials are kept, running
    ones continue from their checkpoints, the searcher from its state), then grow it to `grow_to` trials
    with a new Tune run over the same Optuna study. The result is None when there is nothing to do, and
    then no Ray is started."""
    rows = load_rows(experiment_dir, spec)
    restore = unfinished(rows, spec)
    grow = grow_to is not None and grow_to > max(len(rows), spec.num_samples)
    if not (restore or grow):
        return spec, None
    ray_start = RayStart(address, log_to_driver=verbose)
    try:
        context = ray_start.result()
        result = sweep_on_ray(spec, context, experiment_dir, verbose, "restore") if restore else None
        if result is not None and result.interrupted:  # Ctrl-C: the command stops here, growing nothing
            return spec, result
        if grow:
            spec = dataclasses.replace(spec, num_samples=grow_to)
            argv = load_yaml_mapping(experiment_dir / SPEC_FILE)["command"][3:]
            result = sweep_on_ray(spec, context, experiment_dir, verbose, "grow", argv)
        return spec, result
    finally:
        ray_start.shutdown()


@contextlib.contextmanager
def tune_records_at(experiment_dir: Path):
    """While Tune restores a sweep, the storage contexts it unpickles point at `experiment_dir`. Tune moves
    the trials it restores to where the experiment is now, but its search generator keeps the Experiment
    it was first given, and set up the trials it creates after a `mv` at the old place ("Unable to set up
    cluster storage"); the checkpoints it records keep their old paths too. Tune's record is also up to
    ~10 s old, and may name a checkpoint that it has deleted since (it keeps a trial's newest): the trial
    then continues from its newest one. A reach into Ray's StorageContext and Checkpoint (Ray 2.60,
    pinned in pyproject.toml)."""
    from ray.train import Checkpoint
    from ray.train._internal.storage import StorageContext

    def storage_setstate(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.experiment_dir_name == experiment_dir.name:
            self.storage_fs_path = experiment_dir.parent.as_posix()

    def checkpoint_setstate(self, state: dict) -> None:  # the checkpoints of trials it records, likewise
        self.__dict__.update(state)
        parts = Path(self.path).parts
        for i in range(len(parts) - 1):
            if parts[i] == experiment_dir.name and parts[i + 1].startswith("run_"):
                self.path = experiment_dir.joinpath(*parts[i + 1 :]).as_posix()
                break
        if not Path(self.path).exists():  # deleted since Tune's record was saved: Tune keeps the newest only
            kept = sorted(p for p in Path(self.path).parent.glob("checkpoint_*") if (p / CHECKPOINT_FILE).exists())
            self.path = kept[-1].as_posix() if kept else self.path

    StorageContext.__setstate__, Checkpoint.__setstate__ = storage_setstate, checkpoint_setstate
    try:
        yield
    finally:
        del StorageContext.__setstate__, Checkpoint.__setstate__


def sweep_on_ray(
    spec: SweepSpec,
    context,
    experiment_dir: Path,
    verbose: bool,
    mode: str,
    argv: list[str] | None = None,
    splits: Splits | None = None,
) -> SweepResult:
    """mode: 'run' a new sweep, 'restore' one whose driver ended (Tune's own restore), or 'grow' a
    finished one to spec.num_samples trials, its searcher learning from the trials the study holds.
    `argv`: the `run` command line that sweep.yaml records (run and grow)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from sweep.progress import ProgressView
    from sweep.searcher import make_searcher

    concurrency = trial_concurrency(spec, ray.cluster_resources())  # more GPUs than there are: nothing made
    if mode == "run":
        experiment_dir.mkdir(parents=True, exist_ok=True)
    if mode != "restore":
        save_spec(spec, experiment_dir, argv or [])
    rows = load_rows(experiment_dir, spec) if mode != "run" else []
    ended = recorded_results(rows, spec)
    if spec.program:
        from sweep.program_trial import run_program_trial

        trainable = tune.with_parameters(
            run_program_trial, spec=spec, experiment_dir=str(experiment_dir), verbose=verbose, ended=ended
        )
    else:
        from sweep.trial import run_trial

        # The data is decoded once, here, and put into Ray's object store; no reference stays in the
        # driver, so each node holds one copy, which its trials read without copying.
        splits = splits or load_splits(spec.base_config)
        trainable = tune.with_parameters(
            run_trial, spec=spec, splits=splits, experiment_dir=str(experiment_dir), ended=ended
        )
    trainable = tune.with_resources(trainable, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
    target = f" until {spec.target_text}" if spec.target is not None else ""
    doing = {"run": "", "restore": f"resuming ({len(rows)} trials so far) ", "grow": f"growing from {len(rows)} to "}
    print(
        f"sweep '{spec.name}': {doing[mode]}{spec.num_samples} trials, {concurrency} at a time, "
        f"{spec.method} search {'maximizing' if spec.mode == 'max' else 'minimizing'} {spec.metric}{target}, "
        f"early stopping {'ASHA' if spec.asha else 'off'}; experiment directory {experiment_dir}"
        f"{dashboard_text(context)}",
        flush=True,
    )
    # Tune's newer reporter prints its start box and a TensorBoard hint into /tmp/ray even at verbose=0; the
    # older one is silent at 0. Tune reads this environment variable (Ray 2.60's) when the fit starts.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    if mode == "restore":  # Tune's callbacks, searcher and scheduler come back from the experiment's files
        with restoring(experiment_dir), tune_records_at(experiment_dir):  # which may have been moved since
            tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_errored=False).fit()
    else:
        scheduler = FIFOScheduler()
        if spec.asha:
            # A program's length is not known: ASHA then stops no trial for its length.
            max_t = spec.max_epochs or MAX_ITERATIONS
            # Epochs, not Tune's count of results, which lags them in a trial continued from a newer checkpoint.
            scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t, **spec.asha)
        writer = ResultsWriter(spec, experiment_dir)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                search_alg=make_searcher(spec, experiment_dir, seed_offset=len(rows)),
                scheduler=scheduler,
                num_samples=spec.num_samples - len(rows),
                max_concurrent_trials=concurrency,
                # One worker process serves trial after trial: imports and set-up are paid once.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=experiment_dir.name,
                storage_path=str(experiment_dir.parent),
                callbacks=[writer, ProgressView(spec, writer)],  # the view reads the writer
                verbose=0,  # our view, run or resumed; --verbose adds the trials' own output
                # A lost worker or node: the trial runs again, from its latest checkpoint, on any node with room.
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        tuner.fit()  # the callbacks write results.csv as trials end, and when the fit ends or is interrupted
    rows = ordered(load_rows(experiment_dir, spec))
    report = None
    if rows:  # drawn while Ray stops (~1.5 s of waiting for its processes): the sweep ends no later
        from sweep.report import write_report

        executor = ThreadPoolExecutor(1)
        report = executor.submit(write_report, experiment_dir)
        executor.shutdown(wait=False)  # returns now; the thread ends with the report
    return SweepResult(experiment_dir, rows, best_row(rows, spec), unfinished(rows, spec), report)


def run_final(experiment_dir: str | Path, max_epochs: int | None = None, runner=None) -> dict:
    """Train the sweep's best config from scratch, evaluate on the test set; files in EXPERIMENT_DIR/final.
    `runner`: a FinalRunner on the sweep's Ray to train it. A program's sweep: run the program once with
    the best trial's arguments, outside Ray."""
    experiment_dir = Path(experiment_dir)
    best_path = experiment_dir / BEST_CONFIG
    if not best_path.exists():
        raise UserError(
            f"{best_path}: no such file; is {experiment_dir} a sweep's experiment directory "
            "with at least one finished trial?"
        )
    values = load_yaml_mapping(best_path)
    saved = load_yaml_mapping(experiment_dir / SPEC_FILE)
    if saved.get("program"):
        if max_epochs is not None:
            raise UserError(f"--max_epochs is a flag of our trainer; change the program's in {best_path} instead")
        return run_program_final(experiment_dir, saved, values)

    if max_epochs is not None:
        values["max_epochs"] = max_epochs
    config = resolve_config(values, str(best_path))
    print(f"final run of {best_path}, {config['max_epochs']} epochs", file=sys.stderr, flush=True)
    if runner is not None:
        import ray

        return ray.get(runner.train.remote(config, str(experiment_dir / "final")))
    from text_recognizer.training import train

    return train(config, output_dir=experiment_dir / "final", quiet=True)


class FinalRunner:
    """`run --final` of our trainer: an actor started with the sweep, holding no CPU while trials run,
    whose worker has imported torch and Lightning by the time the sweep ends: the final run starts at once
    (in a new process it would pay ~5 s of imports on 2 cores)."""

    def __init__(self):
        import text_recognizer.training  # noqa: F401

    def train(self, config: dict, output_dir: str) -> dict:
        from text_recognizer.training import train

        return train(config, output_dir=output_dir, quiet=True)


def run_program_final(experiment_dir: Path, saved: dict, args: dict) -> dict:
    """The program once more with the best trial's arguments (best_config.yaml), its files in final/."""
    from sweep.trials import program_run as program
    from sweep.spec.command import Program

    final = Program(**{**saved["program"], "command": tuple(saved["program"]["command"])})
    run_dir = experiment_dir / "final"
    print(f"final run of {final.path or final.command[0]} with {experiment_dir / BEST_CONFIG}", file=sys.stderr)
    run = program.start(final, args, run_dir, run_id=f"final-{int(time.time())}", sweep_name=saved["name"])
    metric, values = saved["metric"], []
    try:
        values = [row[metric] for row in run.rows() if metric in row]
    except BaseException:  # Ctrl-C
        run.stop()
        raise
    run.end()
    failure = run.failure(metric, len(values))
    if failure:
        raise UserError(f"the final run failed: {failure} (output: {run.log_path})")
    return {"metric": metric, "value": values[-1], "logged": len(values), "output": run.log_path}
