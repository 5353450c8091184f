"""How long a user waits: the quickstart with its final run, from the command to its exit, next to Ray's
own floor measured in the same run; and how long reading a search space takes without Ray.

    python benchmarks/startup.py               # the quickstart (10 trials) and --final, twice
    python benchmarks/startup.py --smoke-test  # 2 trials, once

wall = `sweep run search_spaces/quickstart.yaml --final` (a local Ray), start to exit, each output line
time-stamped (the start line, the first and the last trial's line, the summary, the final run's line).
floor = a fresh Python that starts a local Ray (with its dashboard, as a sweep does), has one worker import
Lightning, and stops Ray: what any Ray Tune + Lightning sweep pays, whatever the tool. Goals on 2 cores:
wall <= 12 s and wall / floor <= 1.3; `sweep validate` of the shipped files, and `sweep run` of a file that
names a flag our trainer lacks, refused before Ray starts, <= 1.5 s each.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import ROOT, SWEEP, add_sweep_options, storage

FLOOR_SCRIPT = """
import os, time
import ray

ray.init(include_dashboard=True, logging_level="ERROR")


@ray.remote(num_cpus=1)
def imports():
    import pytorch_lightning  # noqa: F401  (and torch): what a trial imports before it can train


ray.get(imports.remote())
ray.shutdown()
os._exit(0)
"""


def timed_lines(command: list[str], cwd: Path) -> tuple[float, list[tuple[float, str]], int]:
    """(wall seconds, [(seconds since start, line)], exit code) of a command, stdout and stderr together."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [(time.perf_counter() - started, line.rstrip("\n")) for line in process.stdout]
    process.wait()
    return time.perf_counter() - started, lines, process.returncode


def first(lines: list[tuple[float, str]], pattern: str, last: bool = False) -> float:
    found = [t for t, line in lines if re.search(pattern, line)]
    return (found[-1] if last else found[0]) if found else float("nan")


def quickstart(folder: Path, samples: int) -> tuple[float, dict]:
    command = [SWEEP, "run", "search_spaces/quickstart.yaml", "--final", "--num-samples", str(samples),
               "--storage-path", str(folder), "--name", f"q{time.monotonic_ns()}"]  # fmt: skip
    wall, lines, code = timed_lines(command, ROOT)
    if code != 0:
        sys.exit("the quickstart failed:\n" + "\n".join(line for _, line in lines[-30:]))
    marks = {
        "start line": first(lines, r"^sweep '"),
        "first trial ended": first(lines, r"^\[ *1/"),
        "last trial ended": first(lines, r"^\[ *\d+/\d+\] trial", last=True),
        "summary": first(lines, r"^\d+ trials: "),
        "final run": first(lines, r"^final run: val_acc="),
    }
    return wall, marks


def floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR_SCRIPT], check=True, capture_output=True)
    return time.perf_counter() - started


def validate(tmp: Path) -> tuple[float, float, str]:
    """(seconds of `sweep validate` of the shipped files, of `sweep run` of a bad file, its refusal)."""
    shipped = sorted(str(p) for p in (ROOT / "search_spaces").glob("*.yaml"))
    good, lines, code = timed_lines([SWEEP, "validate", *shipped], ROOT)
    if code != 0:
        sys.exit("a shipped search space is bad:\n" + "\n".join(line for _, line in lines))
    bad_file = tmp / "bad.yaml"
    bad_file.write_text("method: random\nparameters: {fc3: {values: [8]}}\n")  # fc3: no flag of our trainer
    bad, lines, code = timed_lines([SWEEP, "run", str(bad_file)], tmp)
    if code != 1:
        sys.exit(f"a bad search space was not refused (exit {code}):\n" + "\n".join(line for _, line in lines))
    return good, bad, lines[-1][1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke-test", action="store_true", help="2 trials, one run of each")
    add_sweep_options(parser, address=False)  # a local Ray: its start is what a user waits for
    args = parser.parse_args()
    runs = 1 if args.smoke_test else 2
    samples = 2 if args.smoke_test else 10
    with storage(args.storage_path) as folder:
        good, bad, refusal = validate(folder)
        results = [quickstart(folder, samples) for _ in range(runs)]
        floors = [floor() for _ in range(runs)]
    wall, marks = min(results, key=lambda result: result[0])
    ray_floor = min(floors)
    print(f"startup: quickstart ({samples} trials) with --final, best of {runs}; Ray's floor best of {runs}")
    print("  " + ", ".join(f"{name} at {seconds:.1f} s" for name, seconds in marks.items()) + f", exit at {wall:.1f} s")
    print(f"quickstart wall = {wall:.1f} s   (goal <= 12 s on 2 cores)")
    print(f"floor = {ray_floor:.1f} s   (Ray started and stopped, one worker importing Lightning)")
    print(f"wall / floor = {wall / ray_floor:.2f}   (goal <= 1.3)")
    print(f"validate seconds = {good:.2f}   (the shipped search spaces; goal <= 1.5)")
    print(f"bad file seconds = {bad:.2f}   (`run` of a bad search space, refused; goal <= 1.5)")
    print(f"  refused with: {refusal}")


if __name__ == "__main__":
    main()
