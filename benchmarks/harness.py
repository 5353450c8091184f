"""What the benchmarks that start sweeps share: the `sweep` command run as a user runs it (on a local Ray, or
on a cluster given with --address), the experiment directory it leaves (kept with --storage-path, else in a
temporary directory) read back through its record, and the processes of the Ray that ran its trials."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sweep.record.state import SweepState, read

ROOT = Path(__file__).resolve().parents[1]
# The installed command, as a user runs it (`python -m sweep` would put the working directory first on sys.path).
SWEEP = str(Path(sys.executable).parent / "sweep")


def add_sweep_options(parser: argparse.ArgumentParser, address: bool = True) -> None:
    parser.add_argument("--storage-path", type=Path, help="keep the experiment directories here (default: a "
                        "temporary directory, deleted at the end)")  # fmt: skip
    if address:
        parser.add_argument("--address", help="run the sweeps on the Ray cluster at HOST:PORT (default: a local Ray "
                            "for each)")  # fmt: skip


@contextlib.contextmanager
def storage(path: Path | None):
    """Where the sweeps' experiment directories go: `path`, kept, or a temporary directory."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def sweep_command(space: dict, folder: Path, name: str, *flags: str, address: str | None = None) -> list[str]:
    """`sweep run` of `space` (written as folder/NAME.yaml) into folder/NAME."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **space}, sort_keys=False))
    command = [SWEEP, "run", str(path), "--storage-path", str(folder), "--name", name, *flags]
    return command + (["--address", address] if address else [])


def run_sweep(
    space: dict, folder: Path, name: str, *flags: str, address: str | None = None
) -> tuple[SweepState, float]:
    """Run a sweep to its end; (its record, the command's wall seconds). A failed sweep ends the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(sweep_command(space, folder, name, *flags, address=address), cwd=ROOT, capture_output=True,
                          text=True)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"sweep {name} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return read(folder / name), wall


def process_tree(root_pids: list[int]) -> list[int]:
    """The processes and all their descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ...
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], list(root_pids)
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def cluster_raylets(address: str) -> list[int]:
    """The raylets on this machine of the Ray cluster at HOST:PORT: its workers are their children. Other
    Rays may run here at the same time (tests, another benchmark): their workers are not this sweep's."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        sys.exit(f"--address {address}: give the head's HOST:PORT")
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args[0].endswith(b"/raylet") and any(a.startswith(b"--gcs-address=") and a.endswith(f":{port}".encode())
                                                 for a in args):  # fmt: skip
            found.append(int(cmdline.parent.name))
    if not found:
        sys.exit(f"--address {address}: no raylet of that cluster on this machine")
    return found


TRIAL_WORKER = "ray::ImplicitFu"  # the name of a Tune function trainable's process (its title, cut to 15 bytes)


def trial_workers(pids: list[int]) -> list[int]:
    """Of these processes, the trial workers."""
    found = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == TRIAL_WORKER:
                found.append(pid)
        except OSError:
            continue
    return found
