"""What an error of the training code does to its trial and its worker, in a real Tune run with reused
workers: an ordinary error ends the trial and the worker goes on with the next one; a CUDA error, or out
of memory on a shared GPU, sends the trial to a fresh worker (Tune's retry). CUDA's errors are raised here
as torch raises them, on this machine without a GPU."""

import json
import re
from pathlib import Path

import pytest
import torch

from sweep.record.storage import TrialFiles
from sweep.trials import reports
from sweep.trials.trainer_worker import cuda_failure, training_failed

pytestmark = pytest.mark.slow
ILLEGAL_ACCESS = "CUDA error: an illegal memory access was encountered"


@pytest.mark.parametrize(
    "error, kind",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
        (RuntimeError(ILLEGAL_ACCESS), "cuda"),
        (RuntimeError("CUDA error: device-side assert triggered"), "cuda"),
        (ValueError("Precision '64-bits' is invalid"), None),
    ],
)
def test_cuda_errors_are_told_apart(error, kind):
    assert cuda_failure(error) == kind


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for this module's Tune runs, in this process."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def failing_trial(config: dict) -> None:
    """The first attempt of the trials named 'bug' and 'cuda' raises their error through `training_failed`, as
    train_trial does, after a first report (Tune adds the worker's PID to each)."""
    from ray import tune

    marker = Path(config["markers"]) / config["name"]
    tune.report(reports.step(1, {"val_acc": 0.5}, 0.1, "node"))
    if config["name"] in ERRORS and not marker.exists():
        marker.touch()
        try:
            raise ERRORS[config["name"]]
        except Exception as exc:
            training_failed(exc, 1, TrialFiles(config["markers"], 0))


ERRORS = {"bug": ValueError("a bug"), "cuda": RuntimeError(ILLEGAL_ACCESS)}


@pytest.mark.parametrize(
    "error, gpus_per_trial, raised",
    [
        (RuntimeError(ILLEGAL_ACCESS), 1, "its worker's CUDA context is unusable; the trial is retried on a fresh one"),
        (torch.OutOfMemoryError("CUDA out of memory"), 0.25, "4 trials share each GPU); retried on another worker, "
         "or give each trial more with --gpus-per-trial 0.5"),  # a shared GPU: it may pass
    ],
)  # fmt: skip
def test_a_cuda_error_is_raised_again_for_tune_to_retry_on_a_fresh_worker(tmp_path, error, gpus_per_trial, raised):
    """(Out of memory on a GPU of its own would come back: it ends the trial, as any other error does.)"""
    with pytest.raises(RuntimeError, match=re.escape(raised)):
        training_failed(error, gpus_per_trial, TrialFiles(str(tmp_path), 0))


def test_a_worker_is_reused_unless_its_trial_failed_on_cuda(tmp_path, local_ray, monkeypatch):
    """One trial at a time, in this order: a bug ends its trial and its worker runs the next one, which
    ends well; a CUDA error sends its trial to a fresh worker, which passes it and runs the last one."""
    from ray import tune

    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")
    names = ["bug", "after_bug", "cuda", "after_cuda"]
    tuner = tune.Tuner(
        failing_trial,
        param_space={"markers": str(tmp_path), "name": tune.grid_search(names)},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), verbose=0, failure_config=tune.FailureConfig(max_failures=1)
        ),
    )
    results = {result.config["name"]: result for result in tuner.fit()}
    pids = {name: [line["pid"] for line in results_of(results[name].path)] for name in names}
    assert len(set(pids["bug"] + pids["after_bug"])) == 1  # the bug's worker ran the next trial
    assert reports.read(results["bug"].metrics)["failed"].startswith("ValueError: a bug")
    assert (tmp_path / "trials" / "0000" / "error.txt").read_text().startswith("Traceback")
    first, retry = pids["cuda"]  # ran twice, on two workers; the last trial on the fresh one
    assert first == pids["bug"][0] and retry != first and pids["after_cuda"] == [retry]
    assert results["cuda"].error is None and "end" not in reports.read(results["cuda"].metrics)  # the retry passed


def results_of(trial_path: str) -> list[dict]:
    return [json.loads(line) for line in (Path(trial_path) / "result.json").read_text().splitlines()]
