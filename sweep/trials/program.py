"""Trials of a program, as W&B's agent runs it: each trial starts the program in its trial's directory and
reports every row it logs as it logs it (early stopping counts the values of the metric, as W&B's
hyperband does), then its W&B summary; early stopping, a lost worker or the sweep's end ends its whole
process group. A program has no checkpoint here: a trial run again starts it from the beginning."""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
import time
from pathlib import Path

from sweep.record.storage import is_uri
from sweep.spec.command import Program
from sweep.spec.spec import SweepSpec
from sweep.trials import program_run, reports
from text_recognizer.util import UserError


def run_program_trial(config: dict, *, spec: SweepSpec, experiment: str, verbose: bool = False,
                      shipped: bool = False) -> None:  # fmt: skip
    """Tune's function trainable. A program that fails, or never logs the metric, ends its trial with a
    one-line reason. `shipped`: Ray gave this worker the program's directory (runtime_env's working_dir),
    its working directory: the program runs from there, not from where the driver ran."""

    from sweep.trials.trainer import trial_files

    files = trial_files(experiment, config["trial"])
    if files is None:
        return
    try:
        run_program(config, spec, files, verbose, shipped)
    finally:
        files.store_all()  # its output and W&B's offline run, to a bucket
        files.close()


def run_program(config: dict, spec: SweepSpec, files, verbose: bool, shipped: bool) -> None:
    import ray
    from ray import tune

    folder = files.folder
    node = ray.get_runtime_context().get_node_id()
    try:
        args = spec.trial_config(config["params"])
    except ValueError as exc:  # a drawn value the parameter does not take
        return tune.report(reports.end(failed=str(exc)))
    gpus = [str(gpu) for gpu in ray.get_gpu_ids()]  # Ray's GPUs for this trial, fractions included: no others
    # A new W&B run id for each start, as W&B's agent gets one from its server: runs of several sweeps
    # synced to one W&B project never collide.
    program = dataclasses.replace(spec.program, cwd=os.getcwd()) if shipped else spec.program
    run = program_run.start(program, args, folder, secrets.token_hex(4), spec.name, gpu_ids=gpus, echo=verbose)
    logged, last = 0, time.perf_counter()  # logged: rows with the metric (all rows without one)
    try:
        for seen, row in enumerate(run.rows()):
            now = time.perf_counter()
            step = row.get("_step", seen)  # W&B's step; a printed line's own
            logged += spec.metric in row if spec.metric else 1
            # Early stopping's stop comes back from this call as SystemExit.
            tune.report(reports.step(step, metrics(row), now - last, node))
            last = now
        summary = run.summary()
        failure = run.failure(spec.metric, logged)
    except BaseException:  # stopped: end the program without waiting for it
        run.stop()
        raise
    run.end()
    tune.report(reports.end(failed=failure, summary=summary))


def metrics(row: dict) -> dict:
    """A history row's values, without W&B's own columns (_step, _runtime, _timestamp)."""
    return {key: value for key, value in row.items() if not key.startswith("_")}


class ProgramTrials:
    """The adapter of a program: what its trials report, their trainable, the final run."""

    horizon = None  # a program's length is not known

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.spec.metric,) if self.spec.metric else ()

    def load(self):
        return None

    def trainable(self, experiment: str, verbose: bool, data):
        from ray import tune

        return tune.with_parameters(run_program_trial, spec=self.spec, experiment=experiment, verbose=verbose,
                                    shipped=is_uri(experiment))  # fmt: skip

    def final_runner(self):
        return None

    def final_run(self, experiment_dir: Path, values: dict, runner=None, max_epochs: int | None = None) -> dict:
        """The program once more with the best trial's values, outside Ray, its files in final/."""
        program: Program = self.spec.program
        args = self.spec.trial_config(values)
        folder = experiment_dir / "final"
        print(f"final run of {program.path or program.command[0]} with the best trial's values", file=sys.stderr)
        run = program_run.start(program, args, folder, f"final-{secrets.token_hex(4)}", self.spec.name)
        metric, values_logged = self.spec.metric, []
        try:
            values_logged = [row[metric] for row in run.rows() if metric in row]
            summary = run.summary()
        except BaseException:  # Ctrl-C
            run.stop()
            raise
        run.end()
        failure = run.failure(metric, len(values_logged))
        if failure:
            raise UserError(f"the final run failed: {failure} (output: {run.log_path})")
        from sweep.record.state import Trial

        trial = Trial(-1, values, 0.0, [{"step": i, "metrics": {metric: v}} for i, v in enumerate(values_logged)],
                      summary=summary)  # fmt: skip
        return {"metric": metric, "value": trial.value(metric, self.spec.mode), "output": run.log_path}

    def final_text(self, metrics: dict) -> list[str]:
        return [f"final run output: {metrics['output']}", f"final run: {metrics['metric']}={metrics['value']}"]

    def check_final(self, max_epochs: int | None) -> None:
        if max_epochs is not None:
            raise UserError("--max-epochs is a flag of our trainer; a program's length is its own")
