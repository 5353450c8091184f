"""One adapter per kind of trial: our trainer, in-process (trainer.py), or a program run as W&B's agent runs
it (program.py). Each owns what its trials report, how long they run, their trainable and the final run."""

from __future__ import annotations

from sweep.spec.spec import SweepSpec


def trials_of(spec: SweepSpec):
    if spec.program is not None:
        from sweep.trials.program import ProgramTrials

        return ProgramTrials(spec)
    from sweep.trials.trainer import TrainerTrials

    return TrainerTrials(spec)
