"""Tune's trainable for a sweep of our trainer. This module imports neither torch nor Lightning: the
driver names the trainable to Tune without them, and each worker imports them (sweep.trial_callbacks)
when it runs its first trial."""

from __future__ import annotations

from ray import tune


def run_trial(values: dict, *, spec, splits, experiment_dir: str, ended: dict | None = None) -> None:
    """Tune's function trainable; `spec` and `splits` arrive once per node through the object store.
    `ended`: the last results of trials that a resumed sweep has in results.csv as ended, which Tune's
    saved state may not: such a trial reports it again and ends."""
    trial_id = tune.get_context().get_trial_id()
    if trial_id in (ended or {}):
        return tune.report(ended[trial_id])
    from sweep.trial_callbacks import train_trial

    train_trial(values, spec=spec, splits=splits, experiment_dir=experiment_dir)
