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
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


def cluster_processes(temp_dir: str, port: int | None = None) -> list[psutil.Process]:
    """The processes whose command line names a node's temp dir or the head's port (Ray's client server
    names only the port), and their children (trial workers, whose titles name neither)."""
    found = {}
    names_port = re.compile(rf":{port}\b") if port else None
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if temp_dir in command or (names_port and names_port.search(command)):
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


@dataclass
class Cluster:
    address: str  # the head's HOST:PORT
    dashboard: str  # http://127.0.0.1:PORT: the Jobs API
    env: dict  # what drivers need: RAY_AUTH_MODE=token
    head_node: str  # Ray node IDs
    worker_node: str
    worker_dir: str  # the worker node's temp dir, which its processes name


@pytest.fixture(scope="module")
def cluster():
    """A fresh 2-node cluster; the last test of this module kills its worker node. Each node has its own
    temp dir: nodes on one machine that share one unpack each job's working dir into the same folder, and
    the worker node's clean-up deletes the job driver's working dir under it."""
    head_dir, worker_dir = (tempfile.mkdtemp(prefix=f"ray2n{i}-", dir="/tmp") for i in (0, 1))  # short paths:
    # Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    port, dashboard_port = free_port(), free_port()
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = [RAY, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={free_port()}", f"--temp-dir={head_dir}", *common]  # fmt: skip
    # free_port() gives ephemeral ports (32768 and up): outside Ray's worker ports, 10002-19999.
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, text=True, timeout=120)
        worker = [RAY, "start", f"--address=127.0.0.1:{port}", f"--temp-dir={worker_dir}", *common]
        subprocess.run(worker, env=env, check=True, capture_output=True, text=True, timeout=120)
        head_node, worker_node = wait_for_nodes(f"127.0.0.1:{port}", env)
        yield Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", env, head_node, worker_node,
                      worker_dir)  # fmt: skip
    finally:
        kill_all(cluster_processes(head_dir, port) + cluster_processes(worker_dir, port))
        for folder in (head_dir, worker_dir):
            shutil.rmtree(folder, ignore_errors=True)


def wait_for_nodes(address: str, env: dict) -> tuple[str, str]:
    """(head node ID, worker node ID), once both nodes are up."""
    probe = (
        f"import ray; ray.init(address='{address}', logging_level='ERROR'); "
        "print(*sorted((n['NodeID'] for n in ray.nodes() if n['Alive']), "
        "key=lambda i: i != ray.get_runtime_context().get_node_id()))"  # the driver runs on the head
    )
    for _ in range(60):
        run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        nodes = run.stdout.split()
        if run.returncode == 0 and len(nodes) == 2:
            return nodes[0], nodes[1]
        time.sleep(1)
    raise AssertionError(f"the cluster at {address} did not get 2 nodes: {run.stdout}{run.stderr}")


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_sweep_runs_trials_on_both_nodes(cluster, tmp_path):
    command = [sys.executable, "-m", "sweep", "run", str(ROOT / "tests/spaces/asha.yaml"), "--address",
               cluster.address, "--storage-path", str(tmp_path), "--name", "two_nodes"]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, env=cluster.env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "6 trials, 2 at a time" in run.stdout  # 1 CPU per node, 1 per trial
    rows = read_csv(tmp_path / "two_nodes" / "results.csv")
    assert len(rows) == 6 and all(row["status"] in ("completed", "stopped early") for row in rows)
    assert {row["node"] for row in rows} == {cluster.head_node, cluster.worker_node}


def test_a_sweep_runs_as_a_ray_job(cluster, tmp_path):
    """`ray job submit --working-dir .`, through Ray's job API with the token: the sweep's driver runs on the
    cluster, and its log (with the summary) is kept there."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    client = JobSubmissionClient(cluster.dashboard, headers={"Authorization": f"Bearer {token}"})
    # `python` of the cluster's environment, as a user's activated venv would give; the job runs in the upload.
    entrypoint = f"{sys.executable} -m sweep run tests/spaces/asha.yaml --storage-path {tmp_path} --name job"
    job = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(ROOT)})  # .gitignore: no .venv
    deadline = time.monotonic() + 600
    while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, "the job did not end within 10 minutes"
        time.sleep(2)
    log = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, log[-3000:]
    assert "6 trials: " in log and "best trial " in log and f"results:     {tmp_path / 'job'}" in log
    assert len(read_csv(tmp_path / "job" / "results.csv")) == 6


def test_a_trial_on_a_lost_node_is_retried_from_its_checkpoint(cluster, tmp_path):
    """Kill the worker node (its raylet, agents and trial worker) while a trial trains there: Tune runs
    that trial again on the head, from its latest checkpoint, and the sweep ends with every trial."""
    command = [sys.executable, "-m", "sweep", "run", str(ROOT / "tests/spaces/retried.yaml"), "--address",
               cluster.address, "--checkpoint-interval", "0", "--storage-path", str(tmp_path), "--name",
               "lost"]  # fmt: skip
    sweep = subprocess.Popen(command, cwd=tmp_path, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    epochs_csv = tmp_path / "lost" / "epochs.csv"

    def epochs_on_worker() -> list[dict]:
        lines = read_csv(epochs_csv) if epochs_csv.exists() else []
        return [line for line in lines if line["node"] == cluster.worker_node]

    deadline = time.monotonic() + 300
    while len(epochs_on_worker()) < 3:  # a trial there has checkpoints to continue from
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stderr.read() if sweep.poll() else ""
        time.sleep(0.2)
    lost_trial = epochs_on_worker()[-1]["trial_id"]
    kill_all([p for p in cluster_processes(cluster.worker_dir) if p.pid != os.getpid()])
    stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stdout[-3000:] + stderr[-3000:]
    rows = {row["trial_id"]: row for row in read_csv(tmp_path / "lost" / "results.csv")}
    assert len(rows) == 4 and all(row["status"] == "completed" for row in rows.values()), rows
    retried = rows[lost_trial]
    assert retried["retries"] == "1" and retried["node"] == cluster.head_node
    epochs = [(int(line["epoch"]), line["node"]) for line in read_csv(epochs_csv) if line["trial_id"] == lost_trial]
    before = [epoch for epoch, node in epochs if node == cluster.worker_node]
    after = [epoch for epoch, node in epochs if node == cluster.head_node]
    assert before[0] == 1 and 1 < after[0] <= before[-1] + 1, epochs  # continued, not started over
    assert after[-1] == 24 and "retries of lost trials" in stdout


def test_an_address_where_no_cluster_is_fails_within_15_s(tmp_path):
    started = time.monotonic()
    command = [sys.executable, "-m", "sweep", "run", str(ROOT / "tests/spaces/asha.yaml"), "--address",
               f"127.0.0.1:{free_port()}", "--storage-path", str(tmp_path)]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 15
    assert run.returncode == 1 and run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert line.startswith("sweep: error: cannot reach the Ray cluster at 127.0.0.1:") and "ray start --head" in line
