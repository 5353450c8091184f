"""How much memory a trial worker holds, and what holds it: a sweep of 2 trials at a time on full
Fashion-MNIST, each trial worker's memory sampled every 0.5 s, next to a fresh Python that only imports
what a worker imports (Ray, torch, Lightning, our trainer).

    python benchmarks/worker_memory.py               # Fashion-MNIST, fc1=1024, 2 trials of 2 epochs
    python benchmarks/worker_memory.py --smoke-test  # the MNIST sample, for `make bench-smoke`

RSS counts every page a process maps (shared libraries and the dataset in Ray's object store too);
private is what the worker alone holds; shared is what it shares with others (the libraries' code, and
the dataset, one copy per node). Goal (issue 17): RSS <= 600 MB per trial worker. Only this sweep's
workers are sampled (those of its local Ray, or of the --address cluster's raylets on this machine), not
those of other Rays running here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.harness import (
    ROOT,
    add_sweep_options,
    cluster_raylets,
    process_tree,
    storage,
    sweep_command,
    trial_workers,
)

IMPORTS = "import ray, torch, pytorch_lightning, sweep.trials.trainer_worker"


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, private and shared MB of one process, from /proc/PID/smaps_rollup."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, *rest = line.split()
            if rest and rest[0].isdigit():
                values[key.rstrip(":")] = int(rest[0]) / 1024
    private = values["Private_Clean"] + values["Private_Dirty"]
    return {"rss": values["Rss"], "private": private, "shared": values["Rss"] - private}


def sweep_peaks(args, folder: Path) -> dict[int, dict[str, float]]:
    """The largest RSS each trial worker reached during a sweep, with its private and shared parts then."""
    run = {"data_class": "MNISTSample" if args.smoke_test else "FashionMNIST", "max_epochs": 2, "fc1": 1024}
    space = {"method": "grid", "run": run, "parameters": {"lr": {"values": [1e-3, 3e-3]}}}
    command = sweep_command(space, folder, "worker_memory", address=args.address)
    raylets = cluster_raylets(args.address) if args.address else []
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, dict[str, float]] = {}

    def sample():
        while process.poll() is None:
            for pid in trial_workers(process_tree(raylets or [process.pid])):
                try:
                    now = memory_mb(pid)
                except OSError:
                    continue
                if now["rss"] > peaks.get(pid, {"rss": 0})["rss"]:
                    peaks[pid] = now
            time.sleep(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = process.communicate()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"the sweep failed:\n{stderr[-3000:]}")
    return peaks


def imports_alone() -> dict[str, float]:
    script = (f"{IMPORTS}; import json, os; from benchmarks.worker_memory import memory_mb; "
              "print(json.dumps(memory_mb(os.getpid())))")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke-test", action="store_true", help="the MNIST sample")
    add_sweep_options(parser)
    args = parser.parse_args()
    with storage(args.storage_path) as folder:
        peaks = sweep_peaks(args, folder)
    floor = imports_alone()
    dataset = "MNISTSample" if args.smoke_test else "FashionMNIST"
    print(f"worker_memory: {len(peaks)} trial worker(s), 2 trials of 2 epochs, fc1=1024, {dataset}")
    for pid, peak in sorted(peaks.items()):
        parts = f"{peak['private']:.0f} private + {peak['shared']:.0f} shared"
        print(f"  worker {pid}: peak RSS {peak['rss']:.0f} MB = {parts}")
    worst = max(peaks.values(), key=lambda peak: peak["rss"])
    print(f"trial worker RSS = {worst['rss']:.0f} MB   (goal <= 600)")
    print(f"trial worker private = {worst['private']:.0f} MB")
    print(
        f"imports alone ({IMPORTS}) = {floor['rss']:.0f} MB RSS, {floor['private']:.0f} MB private: "
        "what a worker holds before its first trial"
    )


if __name__ == "__main__":
    main()
