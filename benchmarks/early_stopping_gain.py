"""What early stopping buys: the same search space, trial count and seed, searched three ways:

  (1) Optuna TPE + ASHA, stopped trials told to Optuna as pruned (our default)
  (2) Optuna TPE + ASHA, stopped trials told to Optuna as completed (what Ray's OptunaSearch does)
  (3) random search, no early stopping

    python benchmarks/early_stopping_gain.py               # full Fashion-MNIST, 16 trials of up to 9 epochs
    python benchmarks/early_stopping_gain.py --smoke-test  # the MNIST sample, 8 trials of up to 3 epochs

Prints the epochs each trained and the best val_acc each found, from each sweep's record: the target is
(1)/(3) epochs <= 0.5 with the best val_acc within 0.5 points.
"""

from __future__ import annotations

import argparse

from benchmarks.harness import add_sweep_options, run_sweep, storage
from sweep.record.state import Status


def base_space(args) -> dict:
    metric = {"name": "val_acc", "goal": "maximize"}
    if args.smoke_test:  # lr down to 1e-6: trials that learn nothing, for ASHA to stop
        return {
            "metric": metric,
            "run": {"data_class": "MNISTSample", "max_epochs": 3},
            "parameters": {
                "fc1": {"values": [32, 64]},
                "lr": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-2},
            },
            "search": {"num_samples": 8, "seed": args.seed},
        }
    return {
        "metric": metric,
        "run": {"data_class": "FashionMNIST", "max_epochs": 9},  # ASHA rungs at epochs 1, 3 and 9
        "parameters": {
            "fc1": {"values": [128, 256, 512, 1024]},
            "fc2": {"values": [32, 64, 128]},
            "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
            "batch_size": {"values": [128, 256, 512]},
        },
        "search": {"num_samples": args.trials, "seed": args.seed},
    }


def variants(args) -> dict[str, dict]:
    asha = {"type": "asha", "grace_period": 1, "reduction_factor": 3}
    base = base_space(args)
    return {
        "(1) TPE + ASHA, pruned": {
            **base,
            "method": "bayes",
            "early_stopping": asha,
            "search": {**base["search"], "stopped_trials": "pruned"},
        },
        "(2) TPE + ASHA, completed": {
            **base,
            "method": "bayes",
            "early_stopping": asha,
            "search": {**base["search"], "stopped_trials": "completed"},
        },
        "(3) random, no stopping": {**base, "method": "random", "early_stopping": "none"},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke-test", action="store_true")
    add_sweep_options(parser)
    args = parser.parse_args()
    results = {}
    with storage(args.storage_path) as folder:
        for index, (label, space) in enumerate(variants(args).items()):
            state, wall = run_sweep(space, folder, f"variant{index + 1}", address=args.address)
            trials = state.trials.values()
            epochs = sum(trial.steps for trial in trials)
            best = state.best().value(state.metric, state.mode)
            stopped = sum(trial.status == Status.STOPPED for trial in trials)
            results[label] = (epochs, best)
            print(
                f"{label:<28} {len(trials)} trials ({stopped} stopped early), {epochs:3d} epochs trained, "
                f"best val_acc {best:.4f}, {wall:.0f} s",
                flush=True,
            )
    (pruned_epochs, pruned_best), (completed_epochs, completed_best), (full_epochs, full_best) = results.values()
    print(
        f"ASHA epochs / no-stopping epochs = {pruned_epochs / full_epochs:.2f} (pruned), "
        f"{completed_epochs / full_epochs:.2f} (completed)   (target <= 0.5)"
    )
    print(
        f"best val_acc, ASHA - no stopping = {100 * (pruned_best - full_best):+.2f} points (pruned), "
        f"{100 * (completed_best - full_best):+.2f} points (completed)   (target within 0.5 points)"
    )


if __name__ == "__main__":
    main()
