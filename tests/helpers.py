"""What the tests share: the project's paths, real command lines, real Ray clusters on this machine, and
the records of the sweeps they run. Fixtures are in conftest.py."""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS: list[Path] = []  # saved by the browser tests, named at the end of the test output
RAY = str(Path(sys.executable).parent / "ray")
# What a driver or a `ray start` needs: token auth (Ray 2.60), and this Python first on PATH, as in an
# activated environment (sweep files that run `python` get this one).
RAY_ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "token",
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
}


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a real command line of this project (python ARGS) and capture its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def parse_metrics(line: str) -> dict[str, float]:
    """'val_acc=0.9 test_acc=0.8' -> {'val_acc': 0.9, 'test_acc': 0.8}"""
    return {key: float(value) for key, value in (part.split("=") for part in line.split())}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_study(experiment_dir: Path, name: str):
    """The Optuna study of a sweep, from its journal file."""
    import optuna

    from sweep.engine.study import journal_storage
    from sweep.record.files import OPTUNA_JOURNAL

    return optuna.load_study(study_name=name, storage=journal_storage(experiment_dir / OPTUNA_JOURNAL))


def read_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cluster_processes(temp_dir: str, port: int | None = None) -> list:
    """The processes whose command line names a node's temp dir or the head's port (Ray's client server
    names only the port), and their children (trial workers, whose titles name neither)."""
    import psutil

    found = {}
    names_port = re.compile(rf":{port}\b") if port else None
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if temp_dir in command or (names_port and names_port.search(command)):
            found[process.pid] = process
            for child in process.children(recursive=True):
                found[child.pid] = child
    return list(found.values())


def kill_all(processes: list) -> None:
    import psutil

    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


@dataclass
class Cluster:
    address: str  # the head's HOST:PORT
    dashboard: str  # http://127.0.0.1:PORT: the Jobs API
    env: dict  # what drivers need: RAY_AUTH_MODE=token
    nodes: list[str]  # Ray node IDs, the head's first
    temp_dirs: list[str]  # each node's own, which its processes name

    @property
    def head_node(self) -> str:
        return self.nodes[0]

    @property
    def worker_node(self) -> str:
        return self.nodes[1]


@contextlib.contextmanager
def ray_cluster(cpus_per_node: list[int], gpus: int = 0):
    """A real Ray cluster on this machine, a node per entry (the head first), token auth, free ports, and
    a temp dir per node: nodes on one machine that share one unpack each job's working dir into the same
    folder, and one node's clean-up deletes another's. Torn down by the PIDs it started: never `ray stop`,
    which would stop every Ray on the machine."""
    temp_dirs = [tempfile.mkdtemp(prefix=f"ray{i}-", dir="/tmp") for i in range(len(cpus_per_node))]  # short:
    # Ray's socket paths must fit in 107 bytes
    port, dashboard_port = free_port(), free_port()

    def common() -> list[str]:
        # Each node's agents on ports of their own: with Ray's fixed defaults, a second node on this machine
        # (of this cluster or another) has no dashboard agent, and the head's takes Ray Jobs.
        ports = ("dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent", "metrics-export")
        return ["--node-ip-address=127.0.0.1", "--disable-usage-stats", *(f"--{p}-port={free_port()}" for p in ports)]

    head = [RAY, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dirs[0]}", f"--num-cpus={cpus_per_node[0]}",
            f"--num-gpus={gpus}",
            *common()]  # fmt: skip
    # free_port() gives ephemeral ports (32768 and up): outside Ray's worker ports, 10002-19999.
    try:
        subprocess.run(head, env=RAY_ENV, check=True, capture_output=True, text=True, timeout=120)
        for temp_dir, cpus in zip(temp_dirs[1:], cpus_per_node[1:], strict=True):
            worker = [RAY, "start", f"--address=127.0.0.1:{port}", f"--temp-dir={temp_dir}", f"--num-cpus={cpus}",
                      *common()]  # fmt: skip
            subprocess.run(worker, env=RAY_ENV, check=True, capture_output=True, text=True, timeout=120)
        address = f"127.0.0.1:{port}"
        nodes = wait_for_nodes(address, len(cpus_per_node))
        yield Cluster(address, f"http://127.0.0.1:{dashboard_port}", RAY_ENV, nodes, temp_dirs)
    finally:
        kill_all([p for d in temp_dirs for p in cluster_processes(d, port)])
        for folder in temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)


def wait_for_nodes(address: str, count: int) -> list[str]:
    """The node IDs, the head's first, once `count` nodes are up."""
    probe = (
        f"import ray; ray.init(address='{address}', logging_level='ERROR'); "
        "print(*sorted((n['NodeID'] for n in ray.nodes() if n['Alive']), "
        "key=lambda i: i != ray.get_runtime_context().get_node_id()))"  # the driver runs on the head
    )
    for _ in range(60):
        run = subprocess.run([sys.executable, "-c", probe], env=RAY_ENV, capture_output=True, text=True, timeout=120)
        nodes = run.stdout.split()
        if run.returncode == 0 and len(nodes) == count:
            return nodes
        time.sleep(1)
    raise AssertionError(f"the cluster at {address} did not get {count} nodes: {run.stdout}{run.stderr}")


def sweep_run(space: Path, storage: Path, name: str, *flags: str, head: Cluster | None = None, cwd: Path | None = None):
    """`python -m sweep run SPACE` into storage/name, from `cwd` (default: storage), on the shared Ray node
    `head` (else a local Ray of its own); returns the finished command and results.csv's rows."""
    import csv

    command = ("-m", "sweep", "run", str(space), "--storage-path", str(storage), "--name", name, *flags)
    command += ("--address", head.address) if head else ()
    run = run_cli(*command, cwd=cwd or storage, env=RAY_ENV if head else None)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(storage / name / "results.csv") as f:
        return run, list(csv.DictReader(f))


def write_record(experiment_dir: Path, space: str, events: list[dict], cwd: Path | None = None):
    """A sweep's experiment directory as a driver would leave it: its file (`space`, a sweep file's text),
    then `events` (without their time) in its record; returns the SweepState read back. For the record's
    readers, without Ray."""
    from sweep.record.events import EventLog
    from sweep.record.files import SOURCE
    from sweep.record.state import read
    from sweep.spec.load import load_spec

    experiment_dir.mkdir(parents=True, exist_ok=True)
    (experiment_dir / SOURCE).write_text(space)
    spec = load_spec(str(experiment_dir / SOURCE), cwd=str(cwd or ROOT))
    log = EventLog(experiment_dir)
    log.write("sweep", spec=spec.resolved(), source=SOURCE, flags={}, cwd=str(cwd or ROOT), address=None)
    for event in events:
        log.write(**event)
    log.close()
    return read(experiment_dir, live=False)


def epochs(trial: int, values: list[float], metric: str = "val_acc", start: int = 1) -> list[dict]:
    """Result events of one trial: `values` of the metric at steps start, start + 1, ..."""
    return [
        {"event": "result", "trial": trial, "step": start + i, "metrics": {metric: v, "val_loss": 1 - v},
         "step_time_s": 0.5, "node": "n1", "gpus": ""}
        for i, v in enumerate(values)
    ]  # fmt: skip
