"""Ordinary mistakes, made as a person makes them, each answered with one line that says what to do, and
never a traceback."""

import signal
import socket
import subprocess
import sys
import time

import pytest

from sweep.engine.study import open_study
from sweep.spec.load import load_spec
from sweep.views.exports import write_exports
from tests.helpers import RAY_ENV, ROOT, SWEEP, TOKEN, epochs, sweep_cli, write_record

SPACE = """\
method: random
metric: {name: val_acc, goal: maximize}
run: {data_class: MNISTSample, max_epochs: 4}
parameters: {lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-1}}
"""


@pytest.fixture
def finished(tmp_path):
    """An experiment directory of a sweep with 300 ended trials, as its driver leaves it."""
    events = []
    for i in range(300):
        events += [{"event": "trial", "trial": i, "params": {"lr": 1e-4 * (i + 1)}}, *epochs(i, [0.5]),
                   {"event": "end", "trial": i, "status": "completed", "reason": "", "summary": {}}]  # fmt: skip
    experiment_dir = tmp_path / "sweep"
    state = write_record(experiment_dir, SPACE, events)
    write_exports(experiment_dir, state)
    open_study(experiment_dir, state, load_spec(str(experiment_dir / "source.yaml")))
    return experiment_dir


def test_best_into_head_ends_quietly(finished):
    run = subprocess.run(f"{sys.executable} -m sweep best {finished} | head -3", shell=True, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert len(run.stdout.splitlines()) == 3 and run.stderr == ""


def test_a_dashboard_on_a_port_in_use_is_one_line(finished):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = sweep_cli("dashboard", str(finished), "--port", str(port), cwd=finished, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"sweep: error: port {port} on 127.0.0.1 is in use: pass another with --port"
    ]


@pytest.mark.parametrize("flag", ["--num-sample", "--gpus"])
def test_abbreviated_flags_are_not_taken_for_others(tmp_path, flag):
    run = sweep_cli("run", "search_spaces/quickstart.yaml", flag, "2", cwd=ROOT, timeout=60)
    assert run.returncode == 2 and f"unrecognized arguments: {flag} 2" in run.stderr


def test_validate_names_each_file_once(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: my sweep\nmethod: grid\nparameters: {lr: {values: [0.1]}}\n")
    run = sweep_cli("validate", str(path), cwd=tmp_path, timeout=60)
    assert run.returncode == 0
    assert run.stderr.count(str(path)) == 1 and run.stderr.startswith(f"warning: {path}: key 'name'")


@pytest.mark.slow
def test_a_second_sweep_with_the_same_name_is_one_line_at_once(tmp_path, ray_head):
    command = [SWEEP, "run", str(ROOT / "tests/spaces/long.yaml"), "--address",
               ray_head.address, "--storage-path", str(tmp_path), "--name", "same"]  # fmt: skip
    first = subprocess.Popen(command, cwd=tmp_path, env=RAY_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        assert "sweep 'long_test'" in first.stdout.readline()  # running
        started = time.monotonic()
        second = subprocess.run(command, cwd=tmp_path, env=RAY_ENV, capture_output=True, text=True, timeout=60)
        assert time.monotonic() - started < 15 and second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"sweep: error: {tmp_path / 'same'}: another sweep is running in it (PID {first.pid}); wait for it to "
            "end or stop it, or pass another --name"
        ]
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    resumed = sweep_cli("resume", str(tmp_path / "same"), "--address", "127.0.0.1:1", cwd=tmp_path)
    assert "another sweep is running" not in resumed.stderr  # the first one's lock went with it


@pytest.mark.slow
def test_joining_a_token_cluster_without_token_mode_is_one_line(tmp_path, ray_head):
    # No token, and a home without one: as on a machine that never joined the cluster.
    env = {**{k: v for k, v in RAY_ENV.items() if k not in TOKEN}, "HOME": str(tmp_path)}
    cluster = ray_head  # token authentication, as every `ray start` cluster of Ray 2.60
    started = time.monotonic()
    run = subprocess.run([SWEEP, "run", str(ROOT / "tests/spaces/asha.yaml"), "--address",
                          cluster.address, "--storage-path", str(tmp_path / "runs")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert time.monotonic() - started < 30 and run.returncode == 1 and "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"sweep: error: the Ray cluster at {cluster.address} asks for a token") and (
        "RAY_AUTH_MODE=token" in line
    )
    assert not any((tmp_path / "runs").iterdir())  # the sweep that never started left no directory
