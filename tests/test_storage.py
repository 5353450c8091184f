"""A sweep on a cluster whose nodes share no filesystem: its experiment in object storage (a real
S3-compatible server on 127.0.0.1, which checks credentials), a 2-node Ray cluster on loopback whose nodes
have temp dirs of their own and no path in common with the experiment, programs shipped to the nodes by
Ray, and the whole cluster lost mid-sweep, then the same Ray Job on a new one: KubeRay's retry."""

import json
import shutil
import time

import pytest

from sweep.record.state import Status, replay
from tests.helpers import (
    RAY_ENV,
    ROOT,
    SWEEP,
    cluster_processes,
    job_log,
    kill_all,
    ray_cluster,
    s3_server,
    submit_job,  # fmt: skip
    sweep_cli,
)

pytestmark = pytest.mark.slow
RECORDED = {"events.jsonl", "source.yaml", "results.csv", "epochs.csv", "best_config.yaml", "optuna.journal",
            "report.html", "history.png"}  # fmt: skip


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def events_of(objects: dict[str, bytes]) -> list[dict]:
    return [json.loads(line) for line in objects["events.jsonl"].decode().splitlines() if line]


def record_of(objects: dict[str, bytes]):
    """The sweep as its record in the bucket says."""
    return replay(events_of(objects))


def test_bad_credentials_a_missing_bucket_and_no_server_are_one_line_before_ray_starts(s3, tmp_path):
    space = str(ROOT / "tests/spaces/asha.yaml")
    cases = {
        "bad key": ({**s3.env, "AWS_SECRET_ACCESS_KEY": "wrong"}, s3.uri("runs"), "SIGNATURE_DOES_NOT_MATCH"),
        "missing bucket": (s3.env, s3.uri("runs", bucket="nobucket"), "NO_SUCH_BUCKET"),
        "no server": (s3.env, s3.uri("runs").replace(s3.endpoint, "http://127.0.0.1:1"), "NETWORK_CONNECTION"),
    }
    for what, (keys, uri, said) in cases.items():
        run = sweep_cli("run", space, "--storage-path", uri, cwd=tmp_path, env={**RAY_ENV, **keys}, timeout=60)
        assert run.returncode == 1 and run.stdout == "", what
        (line,) = run.stderr.strip().splitlines()
        assert line.startswith(f"sweep: error: {uri.split('?')[0]}/asha_test-") and f"AWS Error {said}" in line, line
        assert "AWS_ACCESS_KEY_ID" in line and s3.secret not in line  # where the keys come from; never the key


@pytest.fixture(scope="module")
def first_cluster(s3):
    """A 2-node cluster, 1 CPU a node, whose nodes read the bucket's credentials from their environment."""
    with ray_cluster([1, 1], env=s3.env) as cluster:
        yield cluster


def test_a_program_sweep_runs_on_both_nodes_from_its_shipped_directory(s3, first_cluster):
    """A bash program that prints name=value lines (no W&B). Its directory reaches the nodes through Ray
    (runtime_env working_dir): nothing of the repository is read from its path; each trial's output lands
    in the bucket, and, with --verbose, in the terminal too."""
    cluster = first_cluster
    run = sweep_cli("run", "tests/spaces/program_stdout.yaml", "--address", cluster.address, "--storage-path",
                    s3.uri("programs"), "--name", "sweep", "--verbose", cwd=ROOT, env=cluster.env)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    objects = s3.objects("programs/sweep")
    assert RECORDED <= set(objects)
    state = record_of(objects)
    assert [t.status for t in state.trials.values()] == [Status.COMPLETED] * 4
    assert {t.node for t in state.trials.values()} == set(cluster.nodes)
    values = {t.params["lr"]: t.value("val_loss", "min") for t in state.trials.values()}
    assert values == pytest.approx({lr: 1 / (5 * lr * 100) for lr in (0.01, 0.02, 0.05, 0.1)}, abs=1e-4)
    for trial in state.trials.values():
        log = objects[f"trials/{trial.number:04d}/output.log"].decode()
        assert f"epoch=5 val_loss={trial.value('val_loss', 'min'):.4f}" in log
        assert trial.steps == 5  # rows 0..5: its first line, then one an epoch
    # --verbose: the programs' output too (Ray forwards it a little later: the last trial's may come too late)
    assert "starting with lr=" in run.stdout and "epoch=1 val_loss=" in run.stdout
    assert f"experiment directory {s3.uri('programs/sweep')}" in run.stdout.splitlines()[0]
    assert f"results:     {s3.uri('programs/sweep/results.csv')}" in run.stdout
    # Every command takes the experiment's URI where it takes a directory.
    uri, env = s3.uri("programs/sweep"), {**RAY_ENV, **s3.env}
    best = sweep_cli("best", uri, cwd=ROOT, env=env)
    assert best.returncode == 0 and f"{s3.uri('programs/sweep/best_config.yaml')}:\n# Best trial" in best.stdout
    final = sweep_cli("final", uri, cwd=ROOT, env=env)
    assert final.returncode == 0 and final.stdout.splitlines()[-1] == "final run: val_loss=0.02", final.stderr
    assert "final/output.log" in s3.names("programs/sweep")
    report = sweep_cli("report", uri, cwd=ROOT, env=env)
    assert report.returncode == 0 and report.stdout.startswith(f"report:      {s3.uri('programs/sweep/report.html')}")


def test_a_resume_removes_the_checkpoints_left_of_ended_trials_and_no_other_file(s3, monkeypatch):
    """What a driver killed between a trial's end and its checkpoint's removal leaves: gone with one listing."""
    import pyarrow.fs

    from sweep.record.storage import Experiment

    for key, value in s3.env.items():  # pyarrow reads the keys from the environment, as the commands do
        monkeypatch.setenv(key, value)
    fs, root = pyarrow.fs.FileSystem.from_uri(s3.uri("left"))
    for name in ("trials/0001/checkpoint.ckpt", "trials/0001/output.log", "trials/0002/checkpoint.ckpt"):
        with fs.open_output_stream(f"{root}/{name}") as out:
            out.write(b"x")
    experiment = Experiment(s3.uri("left"))
    experiment.mirror().mkdir(parents=True)
    experiment.remove_left_files([0, 1], "checkpoint.ckpt")
    assert sorted(s3.names("left")) == ["trials/0001/output.log", "trials/0002/checkpoint.ckpt"]
    experiment.close(upload=False)


ENTRYPOINT = (f"{SWEEP} run tests/spaces/resumable.yaml --num-samples 3 --checkpoint-interval 0 "
              "--storage-path '{uri}' --name sweep --resume")  # fmt: skip


@pytest.fixture(scope="module")
def lost(s3, first_cluster):
    """The sweep as a Ray Job on the first cluster, and that whole cluster killed mid-sweep (head and worker,
    every process, the driver's own files gone with their temp dirs), once a trial has ended and another's
    checkpoint is in the bucket. Returns the bucket's objects then."""
    from ray.job_submission import JobStatus

    client, job = submit_job(first_cluster, ENTRYPOINT.format(uri=s3.uri("jobs")))
    deadline = time.monotonic() + 300
    while True:  # as the bucket has it: the record as trials end (and every 10 s), checkpoints each epoch
        names = s3.names("jobs/sweep")
        objects = s3.objects("jobs/sweep", names=["events.jsonl"])
        state = record_of(objects) if objects else None
        ended = {f"trials/{t.number:04d}/checkpoint.ckpt" for t in state.ended()} if state else set()
        if ended and {name for name in names if name.endswith("checkpoint.ckpt")} - ended:
            break
        running = client.get_job_status(job) in (JobStatus.PENDING, JobStatus.RUNNING)
        assert time.monotonic() < deadline and running, job_log(client, job)
        time.sleep(0.2)
    kill_all([p for folder in first_cluster.temp_dirs for p in cluster_processes(folder)])
    for folder in first_cluster.temp_dirs:
        shutil.rmtree(folder, ignore_errors=True)
    return names


def test_a_sweep_whose_whole_cluster_was_lost_resumes_from_the_bucket_on_a_new_one(s3, first_cluster, lost):
    """The same job on a new cluster continues the sweep from the bucket alone: every trial once, none
    failed, the interrupted ones from their checkpoints, every file in the bucket, and no object holding
    the secret key."""
    from ray.job_submission import JobStatus

    with ray_cluster([2], env=s3.env) as second:  # fresh temp dirs: nothing of the first is left
        client, job = submit_job(second, ENTRYPOINT.format(uri=s3.uri("jobs")))
        status, log = job_log(client, job)
    assert status == JobStatus.SUCCEEDED, log[-3000:]
    assert "resuming (" in log and "3 trials: 3 completed" in log
    objects = s3.objects("jobs/sweep")
    assert RECORDED <= set(objects) and not [name for name in objects if name.endswith("checkpoint.ckpt")]
    state = record_of(objects)
    assert [t.status for t in state.trials.values()] == [Status.COMPLETED] * 3
    continued = [t for t in state.trials.values() if t.attempts == 2]
    assert continued and all([r["step"] for r in t.results] == list(range(1, 9)) for t in continued)
    resumed = [e for e in events_of(objects)[[e["event"] for e in events_of(objects)].index("resume") :]
               if e["event"] == "result" and e["trial"] in {t.number for t in continued}]  # fmt: skip
    replayed = [e["step"] for e in resumed if e.get("replayed")]
    assert replayed and min(e["step"] for e in resumed if not e.get("replayed")) == max(replayed) + 1  # from there
    nodes = {r["node"] for _, r in state.order}
    assert set(first_cluster.nodes) <= nodes and set(second.nodes) & nodes  # both clusters, both nodes of the first
    assert {e["event"] for e in events_of(objects)} >= {"sweep", "resume", "stop"}
    everything = s3.objects("")
    assert everything and not [name for name, data in everything.items() if s3.secret.encode() in data]
