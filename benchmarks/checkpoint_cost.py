"""What trial checkpoints cost: the same sweeps with a checkpoint after every epoch
(`--checkpoint-interval 0`) and with none, measured side by side in one run.

    python benchmarks/checkpoint_cost.py               # the fc1=1024 trial on Fashion-MNIST, then the 24-trial sweep
    python benchmarks/checkpoint_cost.py --epoch-only  # only the fc1=1024 trial (~3 min)
    python benchmarks/checkpoint_cost.py --smoke-test  # tiny sizes, for CI

(1) One trial of the fc1=1024 MLP on full Fashion-MNIST, 8 epochs, run as a one-trial sweep through the
real command line, 3 times each way, alternating; a trial's wall time per epoch is its duration in
results.csv over its epochs: training, validation, Lightning's save and Tune's copy of the checkpoint
into the experiment directory. Target: <= 1.05 at interval 0.
(2) `benchmarks/sweep_efficiency.py --trials 24` with `--checkpoint-interval 0` and with the default
(60 s, which these 5-10 s trials never reach): the ratio of their wall times.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NEVER = "1e9"  # an interval no trial reaches: no checkpoint


def one_trial_sweep(folder: Path, interval: str, smoke: bool) -> float:
    """Seconds per epoch of the one trial."""
    run = {"data_class": "MNISTSample", "max_epochs": 2} if smoke else {"data_class": "FashionMNIST", "max_epochs": 8}
    space = {
        "name": "checkpoint_cost",
        "method": "grid",
        "run": {**run, "fc2": 128, "batch_size": 256},
        "parameters": {"fc1": {"values": [1024]}},
        "resources": {"cpus_per_trial": 2},
        "early_stopping": "none",
    }
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    name = f"run{len(list(folder.glob('run*')))}"
    command = [sys.executable, "-m", "sweep", "run", str(path), "--storage-path", str(folder), "--name", name,
               "--checkpoint-interval", interval]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(folder / name / "results.csv") as f:
        (row,) = csv.DictReader(f)
    checkpoints = list((folder / name).glob("run_trial_*/checkpoint_*"))
    assert bool(checkpoints) == (interval != NEVER), checkpoints  # the last one is kept
    return float(row["duration_s"]) / int(row["epochs"])


def sweep_wall(interval: str | None, smoke: bool) -> float:
    command = [sys.executable, str(ROOT / "benchmarks" / "sweep_efficiency.py")]
    command += ["--smoke-test"] if smoke else ["--trials", "24"]
    if interval is not None:
        command += ["--checkpoint-interval", interval]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    print("  " + "\n  ".join(line for line in output.splitlines() if "wall time" in line or "efficiency =" in line))
    return float(re.search(r"wall time of `python -m sweep run`: ([0-9.]+) s", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epoch-only", action="store_true")
    parser.add_argument("--smoke-test", action="store_true")
    args = parser.parse_args()
    pairs = 1 if args.smoke_test else 3
    with tempfile.TemporaryDirectory() as folder:
        every, none = [], []
        for _ in range(pairs):
            every.append(one_trial_sweep(Path(folder), "0", args.smoke_test))
            none.append(one_trial_sweep(Path(folder), NEVER, args.smoke_test))
    print(f"one fc1=1024 trial, seconds per epoch: every epoch {every}, none {none}")
    print(f"epoch with checkpoint / without = {statistics.median(every) / statistics.median(none):.3f}")
    if not args.epoch_only:
        print("sweep_efficiency, --checkpoint-interval 0:")
        every_sweep = sweep_wall("0", args.smoke_test)
        print("sweep_efficiency, default interval (60 s):")
        default_sweep = sweep_wall(None, args.smoke_test)
        print(f"sweep wall, interval 0 / default = {every_sweep / default_sweep:.3f}")


if __name__ == "__main__":
    main()
