"""What runs inside a Ray Tune trial of a program: the program, each logged value of the sweep's metric
reported to Tune as it happens (one iteration per value, as W&B's hyperband counts them), so that ASHA can
stop it; ASHA's stop, a lost worker or the end of the sweep ends its whole process group."""

from __future__ import annotations

import math
import time
from pathlib import Path

import ray
from ray import tune

from sweep.trials import program_run as program


def run_program_trial(
    values: dict, *, spec, experiment_dir: str, verbose: bool = False, ended: dict | None = None
) -> None:
    """Tune's function trainable for a program: no checkpoint, so a trial run again (a lost worker, a
    resumed sweep) runs the program again from the beginning. A program that fails, or never logs the
    metric, ends its trial with a one-line reason in its last result (`failed`)."""
    context = tune.get_context()
    trial_id = context.get_trial_id()
    if trial_id in (ended or {}):  # ended before the sweep was resumed: it ends again, as it did
        return tune.report(ended[trial_id])
    run_dir = Path(experiment_dir) / Path(context.get_trial_dir()).name  # Tune's trial directory
    base = {
        "trial_start": time.time(),
        "node": ray.get_runtime_context().get_node_id(),
        "diverged": False,
        "failed": "",
        "log": str(run_dir / program.OUTPUT_LOG),
    }
    try:
        args = spec.trial_config(values)
    except ValueError as exc:  # a drawn value the parameter does not take
        return tune.report({**base, spec.metric: math.nan, "epoch": 0, "epoch_time_s": 0.0, "failed": str(exc)})
    gpus = [str(gpu) for gpu in ray.get_gpu_ids()]  # Ray's GPUs for this trial, fractions included: no others
    run = program.start(spec.program, args, run_dir, trial_id, spec.name, gpu_ids=gpus, echo=verbose)
    reported, last = 0, time.perf_counter()
    try:
        for row in run.rows():
            if spec.metric in row:
                reported += 1
                now = time.perf_counter()
                # ASHA's stop comes back from this call as SystemExit.
                tune.report({**base, spec.metric: row[spec.metric], "epoch": reported, "epoch_time_s": now - last})
                last = now
        failure = run.failure(spec.metric, reported)
        if failure:
            tune.report({**base, spec.metric: math.nan, "epoch": reported, "epoch_time_s": 0.0, "failed": failure})
    except BaseException:  # stopped: end the program without waiting for it
        run.stop()
        raise
    run.end()
