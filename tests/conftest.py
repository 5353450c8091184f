import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a real command line of this project (python ARGS) and capture its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(tmp_path):
    """Runs `python ARGS` in a fresh directory, so that runs and logs land in tmp_path."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=tmp_path, timeout=timeout)

    return run


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


SCREENSHOTS: list[Path] = []  # saved by the browser tests, named at the end of the test output


def pytest_terminal_summary(terminalreporter):
    if SCREENSHOTS:
        terminalreporter.write_line(f"browser screenshots ({len(SCREENSHOTS)}):")
        for path in SCREENSHOTS:
            terminalreporter.write_line(f"  {path}")


def load_study(experiment_dir: Path, name: str):
    """The Optuna study of a sweep, from its journal file."""
    import optuna

    from sweep.files import OPTUNA_JOURNAL

    backend = optuna.storages.journal.JournalFileBackend(str(experiment_dir / OPTUNA_JOURNAL))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))
