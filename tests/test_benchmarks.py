"""Each benchmark's --smoke-test runs end to end and prints its figures (the figures are not judged here:
timing on shared machines belongs in the benchmarks' own output, not in tests)."""

import re

import pytest

from tests.conftest import ROOT, run_cli
from text_recognizer.data.fashion_mnist import DEBIAN_DIR

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
    run = run_cli(str(ROOT / "benchmarks" / "checkpoint_cost.py"), "--smoke-test", cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert figure(run.stdout, "epoch with checkpoint / without") > 0
    assert figure(run.stdout, "sweep wall, interval 0 / default") > 0
