"""How much of a sweep's wall time is training: a grid of 12 fixed configurations on full Fashion-MNIST,
no early stopping, run through the real command line (`sweep run`, Ray's start included: always a local Ray).

    python benchmarks/sweep_efficiency.py                        # CPU: 2 trials at a time on 2 cores
    python benchmarks/sweep_efficiency.py --trials 36            # the same 12 configurations x 3 dropouts
    python benchmarks/sweep_efficiency.py --gpus-per-trial 0.25  # GPU: 4 trials share one GPU
    python benchmarks/sweep_efficiency.py --quickstart 300       # 300 trials of 2 epochs (~0.3 s each)
    python benchmarks/sweep_efficiency.py --smoke-test           # 4 one-epoch trials, for `make bench-smoke`

efficiency = (sum over trials of their epoch times, training and validation only, from the sweep's record)
             / (trials at a time x wall time of the whole command)
fixed cost per trial = (trials at a time x wall time - sum of epoch times) / trials
Peak memory is the proportional set size (PSS: shared pages counted once) of the command's process tree,
Ray's processes and trial workers included (the peak names how many trial workers it caught), sampled every
second.

After the sweep it measures the floor that any Ray Tune + Lightning sweep pays once, whatever the tool:
a fresh Python starts a local Ray with its dashboard, starts as many workers as the sweep ran trials at
a time (with the runtime_env Tune gives trial actors), each imports Lightning, and Ray is stopped. It is
measured twice and the smaller is kept; from it, the best fixed cost and efficiency
that this same sweep could have had.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.harness import ROOT, TRIAL_WORKER, add_sweep_options, process_tree, storage, sweep_command
from sweep.record.state import read


def space(args) -> dict:
    if args.quickstart:  # many short trials: the quickstart's parameters, 2 epochs each, no early stopping
        return {
            "name": "sweep_efficiency",
            "method": "random",
            "run": {"data_class": "MNISTSample", "max_epochs": 2},
            "parameters": {
                "fc1": {"values": [64, 128, 256, 512]},
                "fc2": {"values": [32, 64, 128]},
                "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 3e-2},
                "batch_size": {"values": [64, 128, 256]},
            },
            "search": {"num_samples": args.quickstart, "seed": 0},
            "early_stopping": "none",
        }
    if args.smoke_test:
        run = {"data_class": "MNISTSample", "max_epochs": 1}
        parameters = {"fc1": {"values": [64, 128]}, "lr": {"values": [1e-3, 3e-3]}}
    else:
        run = {"data_class": "FashionMNIST", "max_epochs": args.epochs, "fc2": 128}
        # Trials of 5-10 s each on this machine: not so unequal that one long trial ends the sweep alone.
        parameters = {
            "fc1": {"values": [512, 768, 1024]},
            "lr": {"values": [1e-3, 3e-3]},
            "batch_size": {"values": [256, 512]},
        }
        if args.trials > 12:  # the same 12 configurations, each with trials/12 dropout values
            parameters["dropout"] = {"values": [round(0.5 - 0.1 * i, 1) for i in range(args.trials // 12)]}
    return {
        "name": "sweep_efficiency",
        "method": "grid",
        "run": run,
        "parameters": parameters,
        "early_stopping": "none",
    }


def tree_pss_bytes(root_pid: int) -> dict[str, int]:
    """PSS in bytes of each process in the tree (a local Ray's processes and workers descend from the
    driver), by 'pid name'."""
    sizes = {}
    for pid in process_tree([root_pid]):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            with open(f"/proc/{pid}/smaps_rollup") as f:
                sizes[f"{pid} {name}"] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue  # the process ended between listing and reading
    return sizes


def run_sweep_command(space: dict, folder: Path, args) -> tuple[float, float, dict[str, int], int, str]:
    """(wall seconds, start as epoch seconds, PSS of each process at the peak, trial workers among them, output)."""
    flags = ["--gpus-per-trial", str(args.gpus_per_trial)]
    if args.checkpoint_interval is not None:
        flags += ["--checkpoint-interval", str(args.checkpoint_interval)]
    command = sweep_command(space, folder, "bench", *flags)
    started, started_epoch = time.perf_counter(), time.time()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak: dict[str, int] = {}
    peak_workers = 0
    output = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    while process.poll() is None:
        sizes = tree_pss_bytes(process.pid)
        if sum(sizes.values()) > sum(peak.values()):
            peak = sizes
            peak_workers = sum(key.split(" ", 1)[1] == TRIAL_WORKER for key in sizes)
        time.sleep(1.0)  # reading smaps costs CPU that the trials need: not more often
    wall = time.perf_counter() - started
    reader.join()
    text = "".join(output)
    if process.returncode != 0:
        sys.exit(f"the sweep failed (exit {process.returncode}):\n{text[-3000:]}")
    return wall, started_epoch, peak, peak_workers, text


# Run in a fresh Python by measure_floor(): prints "ready <epoch seconds>" and "stopped <seconds>".
FLOOR_SCRIPT = """
import os, sys, time
import ray

workers, gpus = int(sys.argv[1]), float(sys.argv[2])
ray.init(include_dashboard=True, logging_level="ERROR")  # as `sweep run` starts a local Ray


# Tune creates trial actors with runtime_env={"env_vars": {"PL_DISABLE_FORK": "1"}}, which keeps Ray from
# handing them the workers it prestarted: they start new ones, as these do.
@ray.remote(num_cpus=1, num_gpus=gpus, runtime_env={"env_vars": {"PL_DISABLE_FORK": "1"}})
class Worker:
    def ready(self):
        import pytorch_lightning  # noqa: F401  (and torch): what a trial imports before it can train

        return time.time()


actors = [Worker.remote() for _ in range(workers)]
print("ready", max(ray.get([actor.ready.remote() for actor in actors])), flush=True)
start = time.time()
for actor in actors:  # as Tune ends its trial actors before the sweep ends: else they linger for ~10 s
    ray.kill(actor)
ray.shutdown()
print("stopped", time.time() - start, flush=True)
os._exit(0)  # as `sweep` exits: torch's interpreter teardown adds ~1.5 s and nothing else
"""


def measure_floor(workers: int, gpus_per_trial: float) -> tuple[float, float, float]:
    """(seconds until every worker has imported Lightning, seconds from then to exit, Ray's stop alone)."""
    started = time.time()
    run = subprocess.run(
        [sys.executable, "-c", FLOOR_SCRIPT, str(workers), str(gpus_per_trial)],
        capture_output=True,
        text=True,
        check=True,
    )
    ended = time.time()
    values = dict(line.split() for line in run.stdout.splitlines() if line.startswith(("ready", "stopped")))
    ready = float(values["ready"])
    return ready - started, ended - ready, float(values["stopped"])


def dataset_bytes(data_class: str) -> int:
    from text_recognizer.datasets import load_splits

    splits = load_splits(data_class)
    return sum(array.nbytes for array in vars(splits).values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpus-per-trial", type=float, default=0)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (3: about 5-10 s of training here)")
    parser.add_argument(
        "--trials",
        type=int,
        default=12,
        choices=(12, 24, 36),
        help="trials in the sweep (12: the issue's minimum); start-up is paid once per sweep, so more trials share it",
    )
    parser.add_argument("--smoke-test", action="store_true", help="4 one-epoch trials on the MNIST sample")
    parser.add_argument(
        "--quickstart", type=int, metavar="N", help="instead: N trials of 2 epochs on the MNIST sample (e.g. 300)"
    )
    parser.add_argument("--checkpoint-interval", type=float, help="passed to sweep run (default: its own, 60 s)")
    add_sweep_options(parser, address=False)  # a local Ray: its start, and its processes' memory, are measured
    args = parser.parse_args()
    spec = space(args)
    with storage(args.storage_path) as folder:
        wall, started, peak, peak_workers, output = run_sweep_command(spec, folder, args)
        trials = list(read(folder / "bench").trials.values())
    concurrency = int(re.search(r"trials, (\d+) at a time", output).group(1))
    per_trial = [trial.train_time_s for trial in trials]
    training = sum(per_trial)
    data_mb = dataset_bytes(spec["run"]["data_class"]) / 2**20
    print(
        f"sweep_efficiency: {len(trials)} trials ({', '.join(sorted({t.status.value for t in trials}))}), "
        f"{spec['run']['data_class']}, {concurrency} at a time, --gpus-per-trial {args.gpus_per_trial:g}"
    )
    print(
        f"  wall time of `sweep run`: {wall:.1f} s; training per trial {min(per_trial):.1f}-"
        f"{max(per_trial):.1f} s, {training:.1f} s in all"
    )
    starts = [trial.started for trial in trials]
    ends = [trial.ended for trial in trials]
    durations = [end - start for start, end in zip(starts, ends, strict=True)]
    in_trials = sum(durations) - training
    idle_slots = concurrency * (max(ends) - min(starts)) - sum(durations)
    print(f"efficiency = {training / (concurrency * wall):.2f}   (target >= 0.80 CPU, >= 0.70 with 4 trials per GPU)")
    print(f"fixed cost per trial = {(concurrency * wall - training) / len(trials):.2f} s   (target <= 1 s)")
    print(
        f"  where the rest went: {min(starts) - started:.1f} s before the first trial started (imports, Ray, "
        f"data, worker start), {started + wall - max(ends):.1f} s after the last ended; between them "
        f"{in_trials / len(trials):.2f} s set-up per trial inside trials and {idle_slots:.1f} slot-seconds idle"
    )
    floors = [measure_floor(concurrency, args.gpus_per_trial) for _ in range(1 if args.smoke_test else 2)]
    to_ready, to_exit, stopping = min(floors, key=lambda parts: parts[0] + parts[1])
    floor = to_ready + to_exit
    print(
        f"floor (the smaller of two runs): start Ray with its dashboard and {concurrency} workers that import "
        f"Lightning, then stop Ray = {floor:.1f} s ({to_ready:.1f} s until the workers are ready, "
        f"{to_exit:.1f} s to exit, {stopping:.1f} s of it Ray's stop)"
    )
    print(
        f"  paid once by any Ray Tune + Lightning sweep: at {len(trials)} trials {concurrency} at a time it alone "
        f"is a fixed cost of {concurrency * floor / len(trials):.2f} s per trial; with only the floor around "
        f"this run's trials, efficiency would be {training / (training + concurrency * floor + in_trials):.2f} "
        f"without idle slots, {training / (training + concurrency * floor + in_trials + idle_slots):.2f} with "
        "this run's"
    )
    print(
        f"peak memory (PSS of the process tree) = {sum(peak.values()) / 2**20:.0f} MiB in {len(peak)} processes, "
        f"{peak_workers} of them trial workers; the dataset is {data_mb:.0f} MiB"
    )
    largest = sorted(peak.items(), key=lambda item: -item[1])[:6]
    print("  largest at the peak: " + ", ".join(f"{name.split()[1]} {size / 2**20:.0f}" for name, size in largest))


if __name__ == "__main__":
    main()
