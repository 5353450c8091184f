"""Fixtures shared by the test files; the functions they use are in tests/helpers.py."""

import json
import os
import subprocess

import pytest
from filelock import FileLock

from tests.helpers import ROOT, SCREENSHOTS, TOKEN, ray_cluster, read_csv, run_cli, sweep_run

SPACES = ROOT / "tests" / "spaces"


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
def asha_sweep(tmp_path_factory, request, worker_id):
    """One real sweep with a final run, shared by the tests that read its files (test_sweep, test_browser):
    one for both pytest workers, run by the first to ask on its Ray node while the other waits to read it."""
    tmp = tmp_path_factory.getbasetemp()  # this session's own; under xdist, its parent: the workers' common one
    tmp = tmp if worker_id == "master" else tmp.parent
    with FileLock(tmp / "asha.lock"):
        done = tmp / "asha.json"
        if not done.exists():
            run, _ = sweep_run(SPACES / "asha.yaml", tmp, "asha", "--final", head=request.getfixturevalue("ray_head"))
            done.write_text(json.dumps([run.args, run.returncode, run.stdout, run.stderr]))
    run = subprocess.CompletedProcess(*json.loads(done.read_text()))
    return run, tmp / "asha", read_csv(tmp / "asha" / "results.csv")


# The heaviest test files first: each pytest worker takes a whole file when it is almost out of work (make
# test: --dist loadfile --no-loadscope-reorder), so the long ones start at once and the short ones fill in.
HEAVIEST_FIRST = ["test_resume", "test_program_sweeps", "test_storage", "test_sweep", "test_program_run",
                  "test_cluster", "test_training", "test_browser", "test_trial_errors", "test_mistakes"]  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each file's own order is kept
