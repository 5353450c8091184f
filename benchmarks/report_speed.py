"""How long `sweep report` takes for a sweep of 100 trials (target: under 10 s).

    python benchmarks/report_speed.py                  # runs a real 100-trial sweep of tiny trials first
    python benchmarks/report_speed.py --experiment-dir runs/mlp-...   # the report of an existing sweep
    python benchmarks/report_speed.py --smoke-test     # 6 trials, for `make bench-smoke`

The sweep is real (MNIST sample, 1-4 epochs of 4 batches, ASHA, random search), so its record (events.jsonl)
is one a sweep writes. The report is timed as a user runs it: a fresh `sweep report` process, imports
included, best of two runs; the report the sweep itself drew is deleted first, so report.html and the PNGs
are the timed command's.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from benchmarks.harness import ROOT, SWEEP, add_sweep_options, run_sweep, storage
from sweep.record.files import REPORT_HTML
from sweep.record.state import read


def sweep_of(folder: Path, trials: int, address: str | None) -> Path:
    space = {
        "method": "random",
        "metric": {"name": "val_acc", "goal": "maximize"},
        "run": {"data_class": "MNISTSample", "max_epochs": 4, "limit_train_batches": 4},
        "parameters": {
            "fc1": {"distribution": "q_log_uniform_values", "min": 16, "max": 512, "q": 16},
            "fc2": {"values": [16, 32, 64]},
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
            "batch_size": {"values": [32, 64, 128]},
        },
        "search": {"num_samples": trials, "seed": 0},
        "early_stopping": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    }
    _, wall = run_sweep(space, folder, "report_speed", address=address)
    print(f"sweep of {trials} trials: {wall:.1f} s")
    return folder / "report_speed"


def time_report(experiment_dir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([SWEEP, "report", str(experiment_dir)], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment-dir", type=Path, help="an existing sweep's directory (default: run one)")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--smoke-test", action="store_true")
    add_sweep_options(parser)
    args = parser.parse_args()
    with storage(args.storage_path) as folder:
        experiment_dir = args.experiment_dir or sweep_of(folder, 6 if args.smoke_test else args.trials, args.address)
        for drawn in [experiment_dir / REPORT_HTML, *experiment_dir.glob("*.png")]:
            drawn.unlink()
        trials = len(read(experiment_dir).trials)
        seconds = min(time_report(experiment_dir) for _ in range(2))
        pngs = len(list(experiment_dir.glob("*.png")))
        size = (experiment_dir / REPORT_HTML).stat().st_size / 1e6
        print(f"report of {trials} trials: report.html ({size:.1f} MB) and {pngs} PNGs")
        print(f"report seconds = {seconds:.2f}")


if __name__ == "__main__":
    main()
