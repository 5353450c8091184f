"""Each benchmark's --smoke-test runs end to end and prints its figures (the figures are not judged here:
timing on shared machines belongs in the benchmarks' own output, not in tests)."""

import re
import subprocess

import pytest

from tests.conftest import ROOT, run_cli
from text_recognizer.datasets import DEBIAN_DIR

pytestmark = pytest.mark.slow


def figure(output: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} = ([0-9.]+)", output, re.MULTILINE)
    assert match, f"no '{name} = ...' line in:\n{output[-2000:]}"
    return float(match.group(1))


@pytest.mark.skipif(not DEBIAN_DIR.exists(), reason="needs Debian's dataset-fashion-mnist")
def test_epoch_speed_smoke(tmp_path):
    run = run_cli(str(ROOT / "benchmarks" / "epoch_speed.py"), "--smoke-test", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert figure(run.stdout, "b/c") > 0 and figure(run.stdout, "a/b") > 0


def test_sweep_efficiency_smoke(tmp_path):
    run = run_cli(str(ROOT / "benchmarks" / "sweep_efficiency.py"), "--smoke-test", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert 0 < figure(run.stdout, "efficiency") <= 1
    assert "4 trials (completed)" in run.stdout and "peak memory" in run.stdout


def test_early_stopping_gain_smoke(tmp_path):
    run = run_cli(str(ROOT / "benchmarks" / "early_stopping_gain.py"), "--smoke-test", cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert 0 < figure(run.stdout, "ASHA epochs / no-stopping epochs") <= 1


def test_report_speed_smoke(tmp_path):
    run = run_cli(str(ROOT / "benchmarks" / "report_speed.py"), "--smoke-test", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert figure(run.stdout, "report seconds") > 0 and "report of 6 trials" in run.stdout


def test_checkpoint_cost_smoke(tmp_path):
    """Its smallest size: one pair of one-trial sweeps (the 24-trial comparison runs sweep_efficiency, tested above)."""
    run = run_cli(str(ROOT / "benchmarks" / "checkpoint_cost.py"), "--smoke-test", "--epoch-only", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    every, none = (float(x) for x in re.search(r"every epoch \[([0-9.]+)\], none \[([0-9.]+)\]", run.stdout).groups())
    assert figure(run.stdout, "epoch with checkpoint / without") == pytest.approx(every / none, abs=1e-3)


def test_startup_smoke(tmp_path):
    """The quickstart's phases come in order, the summary before the final run, all before the exit."""
    run = run_cli(str(ROOT / "benchmarks" / "startup.py"), "--smoke-test", cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    marks = [float(t) for t in re.findall(r" at ([0-9.]+) s", run.stdout.splitlines()[1])]
    assert len(marks) == 6 and marks == sorted(marks), run.stdout
    wall, floor = figure(run.stdout, "quickstart wall"), figure(run.stdout, "floor")
    # wall and floor are printed to 0.1 s, the ratio of the unrounded ones to 0.01
    low, high = (wall - 0.05) / (floor + 0.05) - 0.005, (wall + 0.05) / (floor - 0.05) + 0.005
    assert low <= figure(run.stdout, "wall / floor") <= high, run.stdout
    assert figure(run.stdout, "validate seconds") < wall and figure(run.stdout, "bad file seconds") < wall


def test_worker_memory_smoke(tmp_path):
    """Each trial worker's peak splits into private and shared, and holds at least what its imports do."""
    run = run_cli(str(ROOT / "benchmarks" / "worker_memory.py"), "--smoke-test", cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    workers = re.findall(r"peak RSS (\d+) MB = (\d+) private \+ (\d+) shared", run.stdout)
    assert workers and all(abs(int(rss) - int(p) - int(sh)) <= 1 for rss, p, sh in workers)
    imports = float(re.search(r"= (\d+) MB RSS, (\d+) MB private: what a worker holds", run.stdout).group(2))
    assert figure(run.stdout, "trial worker private") >= imports * 0.9


def test_gpu_check_says_in_one_line_that_there_is_no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run benchmarks/gpu_check.sh itself")
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1 and run.stderr == ""
    assert run.stdout.splitlines() == [
        "gpu_check: no CUDA GPU on this machine (nvidia-smi finds none): nothing to check"
    ]
