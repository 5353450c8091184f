"""A real 2-node Ray cluster on this machine (a head and a worker node, 1 CPU each, token auth, their own
temp dir and ports): a sweep as a Ray Job, and a node lost under a trial. (Trials and programs on both
nodes, with the experiment in object storage: test_storage.py.) Torn down by the PIDs it started: never
`ray stop`, which would stop every Ray on the machine."""

import os
import subprocess
import time

import pytest

from sweep.record.state import Status, read
from tests.helpers import (
    ROOT,
    SWEEP,
    cluster_processes,
    free_port,
    job_log,
    kill_all,
    ray_cluster,
    read_csv,
    submit_job,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A fresh 2-node cluster, 1 CPU a node; the last test of this module kills its worker node."""
    with ray_cluster([1, 1]) as cluster:
        yield cluster


def test_a_sweep_runs_as_a_ray_job(cluster, tmp_path):
    """`ray job submit --working-dir .`: the sweep's driver runs on the cluster, and its log (with the
    summary) is kept there."""
    from ray.job_submission import JobStatus

    # `python` of the cluster's environment, as a user's activated venv would give; the job runs in the upload.
    client, job = submit_job(cluster, f"{SWEEP} run tests/spaces/asha.yaml --storage-path {tmp_path} --name job")
    status, log = job_log(client, job)
    assert status == JobStatus.SUCCEEDED, log[-3000:]
    assert "6 trials: " in log and "best trial " in log and f"results:     {tmp_path / 'job'}" in log
    assert len(read_csv(tmp_path / "job" / "results.csv")) == 6
    assert read(tmp_path / "job").address  # the cluster the job joined: its resume goes back there


def test_a_trial_on_a_lost_node_is_retried_from_its_checkpoint(cluster, tmp_path):
    """Kill the worker node (its raylet, agents and trial worker) while a trial trains there: Tune runs
    that trial again on the head, from its latest checkpoint, and the sweep ends with every trial."""
    command = [SWEEP, "run", str(ROOT / "tests/spaces/retried.yaml"), "--address",
               cluster.address, "--checkpoint-interval", "0", "--storage-path", str(tmp_path), "--name",
               "lost"]  # fmt: skip
    sweep = subprocess.Popen(command, cwd=tmp_path, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip

    def on_worker() -> list[tuple[int, dict]]:
        if not (tmp_path / "lost" / "events.jsonl").exists():
            return []
        return [(n, r) for n, r in read(tmp_path / "lost", live=True).order if r["node"] == cluster.worker_node]

    deadline = time.monotonic() + 300
    while len(on_worker()) < 3:  # a trial there has checkpoints to continue from
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stderr.read() if sweep.poll() else ""
        time.sleep(0.2)
    lost_trial = on_worker()[-1][0]
    kill_all([p for p in cluster_processes(cluster.temp_dirs[1]) if p.pid != os.getpid()])
    stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stdout[-3000:] + stderr[-3000:]
    state = read(tmp_path / "lost")
    assert [t.status for t in state.trials.values()] == [Status.COMPLETED] * 4
    retried = state.trials[lost_trial]
    assert (retried.retries, retried.attempts, retried.node) == (1, 2, cluster.head_node)
    steps = [(r["step"], r["node"]) for n, r in state.order if n == lost_trial]  # every report, as it came
    before = [step for step, node in steps if node == cluster.worker_node]
    after = [step for step, node in steps if node == cluster.head_node]
    assert before[0] == 1 and 1 < after[0] <= before[-1] + 1, steps  # continued from its checkpoint
    assert after[-1] == 12 and [r["step"] for r in retried.results] == list(range(1, 13))
    assert "retries of lost trials" in stdout and "running it again (1 of 2 retries)" in stdout


def test_an_address_where_no_cluster_is_fails_within_15_s(tmp_path):
    started = time.monotonic()
    command = [SWEEP, "run", str(ROOT / "tests/spaces/asha.yaml"), "--address",
               f"127.0.0.1:{free_port()}", "--storage-path", str(tmp_path)]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 15
    assert run.returncode == 1 and run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert line.startswith("sweep: error: cannot reach the Ray cluster at 127.0.0.1:") and "ray start --head" in line
