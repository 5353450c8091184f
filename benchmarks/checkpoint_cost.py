"""What trial checkpoints cost, and what they buy: the same sweeps with a checkpoint after every epoch
(`--checkpoint-interval 0`) and with none, measured side by side in one run.

    python benchmarks/checkpoint_cost.py               # the fc1=1024 trial on Fashion-MNIST, then the 24-trial sweep
    python benchmarks/checkpoint_cost.py --epoch-only  # (0) and (1): no 24-trial sweeps (~4 min)
    python benchmarks/checkpoint_cost.py --smoke-test  # the MNIST sample, one pair, for `make bench-smoke`

(0) What a checkpoint buys: the one-trial sweep below, stopped with Ctrl-C (SIGINT) as soon as its record
holds two epochs, each way. At interval 0 the trial's checkpoint (trials/0000/checkpoint.ckpt) is kept, and
`sweep resume` continues the trial from it: the epochs the record held are not trained again (the
checkpoint's reports of them are sent again, unchanged), and the trial goes on to its last epoch. With none
there is no checkpoint: a resume would train the trial from its first epoch.
(1) One trial of the fc1=1024 MLP on full Fashion-MNIST, 8 epochs, run as a one-trial sweep through the
real command line, 3 times each way, alternating; a trial's wall time per epoch is its duration in the
record over its epochs: training, validation and Lightning's save into the trial's directory. Target:
<= 1.05 at interval 0.
(2) `benchmarks/sweep_efficiency.py --trials 24` with `--checkpoint-interval 0` and with the default
(60 s, which these 5-10 s trials never reach): the ratio of their wall times.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import ROOT, SWEEP, add_sweep_options, run_sweep, storage, sweep_command
from sweep.record.events import read_events
from sweep.record.files import CHECKPOINT, trial_dir
from sweep.record.state import read

NEVER = "1e9"  # an interval no trial reaches: no checkpoint


def one_trial_space(smoke: bool, max_epochs: int | None = None) -> dict:
    run = {"data_class": "MNISTSample", "max_epochs": 2} if smoke else {"data_class": "FashionMNIST", "max_epochs": 8}
    return {
        "method": "grid",
        "run": {**run, "max_epochs": max_epochs or run["max_epochs"], "fc2": 128, "batch_size": 256},
        "parameters": {"fc1": {"values": [1024]}},
        "resources": {"cpus_per_trial": 2},
        "early_stopping": "none",
    }


def one_trial_sweep(folder: Path, interval: str, smoke: bool, address: str | None) -> float:
    """Seconds per epoch of the one trial."""
    name = f"run{len(list(folder.glob('run*.yaml')))}"
    state, _ = run_sweep(one_trial_space(smoke), folder, name, "--checkpoint-interval", interval, address=address)
    (trial,) = state.trials.values()
    return (trial.ended - trial.started) / trial.steps


def reports_by_attempt(experiment_dir: Path) -> dict[int, list[dict]]:
    """Trial 0's reports in each of its attempts (its starts on a worker), as the record has them."""
    found, attempt = {}, 0
    for event in read_events(experiment_dir):
        if event["event"] == "start":
            attempt = event["attempt"]
        elif event["event"] == "result":
            found.setdefault(attempt, []).append({key: event[key] for key in ("step", "metrics", "step_time_s")})
    return found


def stop_and_resume(folder: Path, interval: str, smoke: bool, address: str | None) -> str:
    """(0): the one trial stopped with Ctrl-C once its record holds two epochs, and resumed where there is a
    checkpoint; what happened, in words."""
    name = "stopped-every-epoch" if interval == "0" else "stopped-none"
    space = one_trial_space(smoke, max_epochs=8 if smoke else None)  # epochs enough to outlast the stop
    experiment_dir = folder / name
    command = sweep_command(space, folder, name, "--checkpoint-interval", interval, address=address)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while process.poll() is None and sum(e["event"] == "result" for e in read_events(experiment_dir)) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate()
    if process.returncode != 130:
        sys.exit(f"checkpoint_cost: the sweep was to be interrupted (exit 130), it exited {process.returncode}:\n"
                 f"{output[-2000:]}")  # fmt: skip
    stopped_after = read(experiment_dir).trials[0].steps
    kept = (trial_dir(experiment_dir, 0) / CHECKPOINT).exists()
    what = f"stopped after epoch {stopped_after} was recorded, "
    if not kept:
        return what + "no checkpoint kept: a resume would train it from epoch 1"
    resume = [SWEEP, "resume", str(experiment_dir), *(["--address", address] if address else [])]
    subprocess.run(resume, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    before, after = reports_by_attempt(experiment_dir)[1], reports_by_attempt(experiment_dir)[2]
    again = [report for report in after if report in before]  # the same epoch time: sent again, not trained
    retrained = [report for report in after if report["step"] <= stopped_after and report not in before]
    return (what + f"checkpoint kept; `sweep resume` sent {len(again)} of them again unchanged from it, trained "
            f"{len(retrained)} of them again, and took the trial to epoch {after[-1]['step']}")  # fmt: skip


def sweep_wall(interval: str | None, smoke: bool) -> float:
    command = [sys.executable, str(ROOT / "benchmarks" / "sweep_efficiency.py")]
    command += ["--smoke-test"] if smoke else ["--trials", "24"]
    if interval is not None:
        command += ["--checkpoint-interval", interval]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    print("  " + "\n  ".join(line for line in output.splitlines() if "wall time" in line or "efficiency =" in line))
    return float(re.search(r"wall time of `sweep run`: ([0-9.]+) s", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epoch-only", action="store_true", help="(0) and (1): not the 24-trial sweeps")
    parser.add_argument("--smoke-test", action="store_true")
    add_sweep_options(parser)  # --address: (0) and (1); (2) measures sweeps with their own local Ray
    args = parser.parse_args()
    pairs = 1 if args.smoke_test else 3
    with storage(args.storage_path) as folder:
        print("a one-trial sweep stopped with Ctrl-C once its record holds two epochs:")
        print(f"  checkpoint every epoch: {stop_and_resume(folder, '0', args.smoke_test, args.address)}", flush=True)
        print(f"  no checkpoint: {stop_and_resume(folder, NEVER, args.smoke_test, args.address)}", flush=True)
        every, none = [], []
        for _ in range(pairs):
            every.append(one_trial_sweep(folder, "0", args.smoke_test, args.address))
            none.append(one_trial_sweep(folder, NEVER, args.smoke_test, args.address))
    print(f"one fc1=1024 trial, seconds per epoch: every epoch {[round(s, 3) for s in every]}, "
          f"none {[round(s, 3) for s in none]}")  # fmt: skip
    print(f"epoch with checkpoint / without = {statistics.median(every) / statistics.median(none):.3f}")
    if not args.epoch_only:
        print("sweep_efficiency, --checkpoint-interval 0:")
        every_sweep = sweep_wall("0", args.smoke_test)
        print("sweep_efficiency, default interval (60 s):")
        default_sweep = sweep_wall(None, args.smoke_test)
        print(f"sweep wall, interval 0 / default = {every_sweep / default_sweep:.3f}")


if __name__ == "__main__":
    main()
