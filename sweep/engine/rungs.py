"""Early stopping as asynchronous successive halving (ASHA), decided as Ray's ASHAScheduler decides it, over
the sweep's record: replaying the record's results rebuilds every rung, so a resumed or edited sweep
stops trials by the same rule as one never killed, and no scheduler state needs saving.

A trial is compared at each milestone grace_period * reduction_factor^k below its last step (its first
result at or past the milestone), with the values that other trials had when they passed it: below the
best 1/reduction_factor of them (the (1 - 1/reduction_factor) percentile), it stops.
"""

from __future__ import annotations

import math

import numpy as np

from sweep.spec.spec import milestones


class Rungs:
    def __init__(self, grace_period: int, reduction_factor: float, horizon: int | None, mode: str):
        """`horizon`: the last step of every trial (our trainer's max_epochs, a program's W&B max_iter), where
        no milestone is needed; None where it is not known (a program)."""
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        self.horizon = horizon
        self.sign = 1.0 if mode == "max" else -1.0
        self.recorded: dict[float, dict[int, float]] = {}  # milestone -> trial number -> score there

    def milestones(self, iteration: int) -> list[float]:
        """The milestones at or below `iteration`, below the horizon, highest first."""
        return milestones(self.grace_period, self.reduction_factor, self.horizon, iteration)[::-1]

    def decide(self, trial: int, iteration: int, value: float | None) -> str:
        """A trial's result at `iteration` (its epoch, or how many values of the metric it has logged):
        '' to go on, or why it stops. Ray's ASHA (stop_last_trials=True): the highest milestone passed
        that has no value of this trial yet takes this one."""
        if value is None or not math.isfinite(value):
            return ""
        score = self.sign * value
        for milestone in self.milestones(iteration):
            recorded = self.recorded.setdefault(milestone, {})
            if trial in recorded:
                continue
            others = list(recorded.values())
            recorded[trial] = score
            if others:
                cutoff = float(np.percentile(others, (1 - 1 / self.reduction_factor) * 100))
                if score < cutoff:
                    return (
                        f"below the best 1/{self.reduction_factor:g} of the {len(others)} trials that reached "
                        f"step {milestone:g} before it (cutoff {self.sign * cutoff:.4g})"
                    )
            return ""
        return ""
