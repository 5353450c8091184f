"""A real 2-node Ray cluster on this machine (a head and a worker node, 1 CPU each, token auth, their own
temp dir and ports), and sweeps that join it with --address. Torn down by the PIDs it started: never
`ray stop`, which would stop every Ray on the machine."""

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


def cluster_processes(temp_dir: str, port: int) -> list[psutil.Process]:
    """The processes whose command line names the cluster's temp dir or its head's port (Ray's client
    server names only the port), and their children."""
    found = {}
    names_port = re.compile(rf":{port}\b")
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if temp_dir in command or names_port.search(command):
            found[process.pid] = process
            for child in process.children(recursive=True):
                found[child.pid] = child
    return list(found.values())


def kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


@pytest.fixture(scope="module")
def cluster():
    """HEAD:PORT of a fresh 2-node cluster, and the environment its drivers need."""
    temp_dir = tempfile.mkdtemp(prefix="ray2n-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    port = free_port()
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = [RAY, "start", "--head", f"--port={port}", f"--dashboard-port={free_port()}",
            f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}", *common]  # fmt: skip
    # free_port() gives ephemeral ports (32768 and up): outside Ray's worker ports, 10002-19999.
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, text=True, timeout=120)
        worker = [RAY, "start", f"--address=127.0.0.1:{port}", *common]
        subprocess.run(worker, env=env, check=True, capture_output=True, text=True, timeout=120)
        wait_for_nodes(f"127.0.0.1:{port}", env, 2)
        yield f"127.0.0.1:{port}", env
    finally:
        kill_all(cluster_processes(temp_dir, port))
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_nodes(address: str, env: dict, count: int) -> None:
    probe = f"import ray; ray.init(address='{address}', logging_level='ERROR'); print(len(ray.nodes()))"
    for _ in range(60):
        run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        if run.returncode == 0 and int(run.stdout.split()[-1]) >= count:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster at {address} did not get {count} nodes: {run.stdout}{run.stderr}")


def test_a_sweep_runs_trials_on_both_nodes(cluster, tmp_path):
    address, env = cluster
    command = [sys.executable, "-m", "sweep", "run", str(ROOT / "tests/spaces/asha.yaml"), "--address", address,
               "--storage-path", str(tmp_path), "--name", "two_nodes"]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "6 trials, 2 at a time" in run.stdout  # 1 CPU per node, 1 per trial
    with open(tmp_path / "two_nodes" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(row["status"] in ("completed", "stopped early") for row in rows)
    nodes = {row["node"] for row in rows}
    assert len(nodes) == 2 and all(len(node) == 56 for node in nodes), nodes  # Ray's hex node IDs


def test_an_address_where_no_cluster_is_fails_within_15_s(tmp_path):
    started = time.monotonic()
    command = [sys.executable, "-m", "sweep", "run", str(ROOT / "tests/spaces/asha.yaml"), "--address",
               f"127.0.0.1:{free_port()}", "--storage-path", str(tmp_path)]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 15
    assert run.returncode == 1 and run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert line.startswith("sweep: error: cannot reach the Ray cluster at 127.0.0.1:") and "ray start --head" in line
