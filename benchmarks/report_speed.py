"""How long `python -m sweep report` takes for a sweep of 100 trials (target: under 10 s).

    python benchmarks/report_speed.py                  # runs a real 100-trial sweep of tiny trials first
    python benchmarks/report_speed.py --experiment-dir runs/mlp-...   # the report of an existing sweep
    python benchmarks/report_speed.py --smoke-test     # 6 trials, for CI

The sweep is real (MNIST sample, 1-4 epochs of 4 batches, ASHA, random search), so results.csv, epochs.csv
and sweep.yaml are the files a sweep writes. The report is timed as a user runs it: a fresh
`python -m sweep report` process, imports included, best of two runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_sweep(folder: Path, trials: int) -> Path:
    space = {
        "name": "report_speed",
        "method": "random",
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
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    command = [sys.executable, "-m", "sweep", "run", str(path), "--storage-path", str(folder), "--name", "sweep"]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"sweep of {trials} trials: {time.perf_counter() - started:.1f} s")
    return folder / "sweep"


def time_report(experiment_dir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sweep", "report", str(experiment_dir)], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment-dir", type=Path, help="an existing sweep's directory (default: run one)")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--smoke-test", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        experiment_dir = args.experiment_dir or run_sweep(Path(folder), 6 if args.smoke_test else args.trials)
        with open(experiment_dir / "results.csv") as f:
            trials = sum(1 for _ in f) - 1
        seconds = min(time_report(experiment_dir) for _ in range(2))
        pngs = len(list(experiment_dir.glob("*.png")))
        size = (experiment_dir / "report.html").stat().st_size / 1e6
        print(f"report of {trials} trials: report.html ({size:.1f} MB) and {pngs} PNGs")
        print(f"report seconds = {seconds:.2f}")


if __name__ == "__main__":
    main()
