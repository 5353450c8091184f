"""Fixtures shared by the test files; the functions they use are in tests/helpers.py."""

import os
import subprocess

import pytest

from tests.helpers import ROOT, SCREENSHOTS, TOKEN, ray_cluster, run_cli, sweep_run


def pytest_configure(config):
    """Every Ray of the tests, started here or by a command they run, uses the tests' own token."""
    os.environ.update(TOKEN)


@pytest.fixture
def cli(tmp_path):
    """Runs `python ARGS` in a fresh directory, so that runs and logs land in tmp_path."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=tmp_path, timeout=timeout)

    return run


def pytest_terminal_summary(terminalreporter):
    if SCREENSHOTS:
        terminalreporter.write_line(f"browser screenshots ({len(SCREENSHOTS)}):")
        for path in SCREENSHOTS:
            terminalreporter.write_line(f"  {path}")


@pytest.fixture(scope="session")
def ray_head():
    """One Ray node of 2 CPUs that sweeps join with --address: a sweep then pays no Ray start and stop. Ray
    counts 2 GPUs on it (there are none): which ones a trial may see is Ray's to say."""
    with ray_cluster([2], gpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def asha_sweep(tmp_path_factory, ray_head):
    """One real sweep with a final run, shared by the tests that read its files (test_sweep, test_browser)."""
    tmp = tmp_path_factory.mktemp("sweep")
    run, rows = sweep_run(ROOT / "tests" / "spaces" / "asha.yaml", tmp, "asha", "--final", head=ray_head)
    return run, tmp / "asha", rows
