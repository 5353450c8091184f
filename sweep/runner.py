"""`run_sweep(spec) -> SweepResult`: Ray Tune + Optuna + ASHA over `train()`, and the final run."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from sweep.cluster import RayStart, dashboard_text, trial_concurrency
from sweep.files import BEST_CONFIG, SPEC_FILE, write_atomically
from sweep.results import ResultsWriter
from sweep.space import SweepSpec
from text_recognizer.config import group_kwargs, resolve_config
from text_recognizer.data import DATA_CLASSES, Splits
from text_recognizer.util import UserError, load_yaml_mapping


@dataclass
class SweepResult:
    experiment_dir: Path
    rows: list[dict]  # one per trial, in start order (see results.csv)
    best: dict | None  # the best row, None when no trial reported a metric
    report: Future | None = None  # report.html and its PNGs, being written while Ray stops

    @property
    def stopped_early(self) -> int:
        return sum(row["status"] == "stopped early" for row in self.rows)

    @property
    def errors(self) -> list[dict]:
        return [row for row in self.rows if row["status"] == "error"]


def load_splits(config: dict) -> Splits:
    data = DATA_CLASSES[config["data_class"]](**group_kwargs(config)["data"])
    return data.load_splits()


def save_spec(spec: SweepSpec, experiment_dir: Path, argv: list[str]) -> None:
    from optuna.distributions import distribution_to_json

    resolved = {
        "source": spec.path,
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
                **({"sampled": "quantile"} if p.from_quantile else {}),
            }
            for name, p in spec.params.items()
        },
    }
    write_atomically(experiment_dir / SPEC_FILE, yaml.safe_dump(resolved, sort_keys=False))


def run_sweep(
    spec: SweepSpec,
    *,
    storage_path: str | Path = "runs",
    name: str,
    address: str | None = None,
    argv: list[str] | None = None,
    ray_start: RayStart | None = None,
    verbose: bool = False,
) -> SweepResult:
    """Run the sweep on a local Ray or the cluster at `address` (or on the one `ray_start` is starting);
    Ray is shut down at the end, also when something fails. `verbose`: Tune's own output, not ours."""
    ray_start = ray_start or RayStart(address, log_to_driver=verbose)
    try:
        return sweep_on_ray(spec, ray_start.result(), Path(storage_path).resolve(), name, argv or [], verbose)
    finally:
        ray_start.shutdown()


def sweep_on_ray(
    spec: SweepSpec, context, storage_path: Path, name: str, argv: list[str], verbose: bool
) -> SweepResult:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from sweep.progress import ProgressView
    from sweep.searcher import make_searcher
    from sweep.trial import run_trial

    experiment_dir = storage_path / name
    if experiment_dir.exists():
        raise UserError(f"{experiment_dir} already exists: pass another --name, or delete it")
    concurrency = trial_concurrency(spec, ray.cluster_resources())
    # The data is decoded once, here, and put into Ray's object store; no reference stays in the driver,
    # so each node holds one copy, which its trials read without copying.
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec=spec, splits=load_splits(spec.base_config)),
        {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial},
    )
    experiment_dir.mkdir(parents=True)
    save_spec(spec, experiment_dir, argv)

    scheduler = FIFOScheduler()
    if spec.asha:
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=spec.max_epochs, **spec.asha)
    writer = ResultsWriter(spec, experiment_dir)
    target = f" until {spec.target_text}" if spec.target is not None else ""
    print(
        f"sweep '{spec.name}': {spec.num_samples} trials, {concurrency} at a time, "
        f"{spec.method} search {'maximizing' if spec.mode == 'max' else 'minimizing'} {spec.metric}{target}, "
        f"early stopping {'ASHA' if spec.asha else 'off'}; experiment directory {experiment_dir}"
        f"{dashboard_text(context)}",
        flush=True,
    )
    view = None if verbose else ProgressView(spec, writer)
    if view is not None:
        # Tune's newer reporter prints its start box and a TensorBoard hint into /tmp/ray even at verbose=0;
        # the older one is silent at 0. Tune reads this when the fit starts.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=make_searcher(spec, experiment_dir),
            scheduler=scheduler,
            num_samples=spec.num_samples,
            max_concurrent_trials=concurrency,
            # One worker process serves trial after trial: imports and set-up are paid once.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage_path),
            callbacks=[writer, view] if view else [writer],
            verbose=int(verbose),
            # A lost worker or node: the trial runs again, from its latest checkpoint, on any node with room.
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    try:
        tuner.fit()
    finally:
        if view is not None:
            view.close()
        writer.finish()
    report = None
    if writer.rows:  # drawn while Ray stops (~1.5 s of waiting for its processes): the sweep ends no later
        from sweep.report import write_report

        executor = ThreadPoolExecutor(1)
        report = executor.submit(write_report, experiment_dir)
        executor.shutdown(wait=False)  # returns now; the thread ends with the report
    return SweepResult(experiment_dir, writer.ordered_rows(), writer.best_row(), report)


def run_final(experiment_dir: str | Path, max_epochs: int | None = None) -> dict:
    """Train the sweep's best config from scratch, evaluate on the test set; files in EXPERIMENT_DIR/final."""
    from text_recognizer.training import train

    experiment_dir = Path(experiment_dir)
    best_path = experiment_dir / BEST_CONFIG
    if not best_path.exists():
        raise UserError(
            f"{best_path}: no such file; is {experiment_dir} a sweep's experiment directory "
            "with at least one finished trial?"
        )
    values = load_yaml_mapping(best_path)
    if max_epochs is not None:
        values["max_epochs"] = max_epochs
    config = resolve_config(values, str(best_path))
    print(f"final run of {best_path}, {config['max_epochs']} epochs", file=sys.stderr, flush=True)
    return train(config, output_dir=experiment_dir / "final", quiet=True)
