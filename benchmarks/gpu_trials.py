"""Each trial's GPUs and peak GPU memory in a GPU sweep's record, and what benchmarks/gpu_check.sh asserts of
them (it runs this after each of its sweeps):

    python benchmarks/gpu_trials.py EXPERIMENT_DIR --gpus-per-trial 1

A line per trial: the GPU ids it saw (the record's "gpus": CUDA_VISIBLE_DEVICES in the trial) and its peak
GPU memory (the metric gpu_peak_mb, torch's max_memory_allocated in the trial's worker). Then, where one
fails, one line on stderr and exit 1:
  - every trial ended completed or stopped early (none failed), on a GPU, having reported gpu_peak_mb;
  - at 1 GPU per trial, each trial saw one GPU, and no two trials that ran at the same time saw the same one;
  - at a fraction (0.25: 4 trials to a GPU), two trials that ran at the same time saw the same GPU (on one
    GPU they must; Ray packs fractions onto a GPU before it takes the next);
  - every peak is under PEAK_BOUND_MIB.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from sweep.record.state import Status, Trial, read

# A fashion_mnist.yaml trial holds the dataset on its GPU (Fashion-MNIST's 60,000 images as float32: ~180 MiB),
# an MLP of at most 784x1024 + 1024x256 + 256x10 weights with Adam's two states (~17 MiB) and batches of at
# most 512 images: ~250 MiB. Four times that means something is kept that should not be (a copy per epoch).
PEAK_BOUND_MIB = 1024


def gpu_ids(trial: Trial) -> set[str]:
    """Every GPU id the trial saw, over its reports (a retried trial may have run on another worker)."""
    return {gpu for result in trial.results for gpu in result["gpus"].split(",") if gpu}


def peak_mib(trial: Trial) -> float | None:
    peaks = [r["metrics"]["gpu_peak_mb"] for r in trial.results if r["metrics"].get("gpu_peak_mb") is not None]
    return max(peaks) if peaks else None


def overlap(a: Trial, b: Trial) -> bool:
    """Whether the two trials ran at the same time (by the record's start and end of each)."""
    if None in (a.started, a.ended, b.started, b.ended):
        return False  # one never started, or never ended: failure() says so
    return a.started < b.ended and b.started < a.ended


def failure(trials: list[Trial], gpus_per_trial: float) -> str:
    """The first assertion that fails, in one line; '' when all hold. The GPU ids are checked before the
    memory: on a Ray node that counts GPUs it does not have, only the memory check fails."""
    if not trials:
        return "the sweep ran no trial"
    for trial in trials:
        if trial.status not in (Status.COMPLETED, Status.STOPPED):
            return f"trial {trial.number} {trial.status.value}: {trial.reason}"
        if not gpu_ids(trial):
            return f"trial {trial.number} saw no GPU (CUDA_VISIBLE_DEVICES empty): it trained on the CPU"
    together = [(a, b) for a, b in itertools.combinations(trials, 2) if overlap(a, b)]
    if gpus_per_trial >= 1:
        for trial in trials:
            if len(gpu_ids(trial)) != 1:
                return f"trial {trial.number} saw GPUs {sorted(gpu_ids(trial))} at 1 GPU per trial: one expected"
        for a, b in together:
            if gpu_ids(a) & gpu_ids(b):
                return f"trials {a.number} and {b.number} ran at the same time on GPU {sorted(gpu_ids(a) & gpu_ids(b))}"
    elif not any(gpu_ids(a) & gpu_ids(b) for a, b in together):
        return (f"at {gpus_per_trial:g} GPU per trial no two trials that ran at the same time shared a GPU "
                f"({len(together)} pairs ran at the same time)")  # fmt: skip
    for trial in trials:
        peak = peak_mib(trial)
        if peak is None:
            return f"trial {trial.number} reported no gpu_peak_mb: CUDA was not available in its worker"
        if peak >= PEAK_BOUND_MIB:
            return f"trial {trial.number} peaked at {peak:.0f} MiB of GPU memory, over the {PEAK_BOUND_MIB} MiB bound"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment_dir", type=Path)
    parser.add_argument("--gpus-per-trial", type=float, required=True, help="what the sweep ran with")
    args = parser.parse_args()
    state = read(args.experiment_dir)
    trials = sorted(state.trials.values(), key=lambda trial: trial.number)
    for trial in trials:
        peak = peak_mib(trial)
        value = trial.value("val_acc", "max")
        print(f"  trial {trial.number}: GPUs {','.join(sorted(gpu_ids(trial))) or 'none'}, peak "
              f"{'-' if peak is None else f'{peak:.0f}'} MiB, val_acc {'-' if value is None else f'{value:.4f}'}, "
              f"{trial.steps} epochs ({trial.status.value}), last epoch "
              f"{trial.results[-1]['step_time_s'] if trial.results else 0:.2f} s")  # fmt: skip
    together = sum(overlap(a, b) for a, b in itertools.combinations(trials, 2))
    print(f"  {len(trials)} trials; pairs that ran at the same time: {together}; peak bound {PEAK_BOUND_MIB} MiB")
    problem = failure(trials, args.gpus_per_trial)
    if problem:
        print(f"--gpus-per-trial {args.gpus_per_trial:g}: {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
