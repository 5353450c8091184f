"""`make bench-smoke`: each benchmark's --smoke-test on small inputs, checked for what its docstring promises,
mostly from the records of the sweeps it ran (kept with --storage-path). Never for its timings: those are
the benchmarks' printed ratios, on a machine that other work shares. Sweeps that measure no Ray start run on
one shared Ray node (--address); sweep_efficiency and startup measure a local Ray's start, so start their own.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.checkpoint_cost import reports_by_attempt
from benchmarks.gpu_trials import failure
from benchmarks.harness import ROOT
from sweep.record.files import CHECKPOINT, REPORT_HTML, trial_dir
from sweep.record.state import Status, read
from tests.helpers import RAY_ENV, load_study, ray_cluster, write_record
from text_recognizer.datasets import DEBIAN_DIR

# early_stopping_gain's smoke test searches 8 trials of at most 3 epochs: ASHA's best may miss random
# search's by a little more than the full run's target (0.5 points over 16 trials of 9 epochs) allows.
SMOKE_BEST_MARGIN = 0.05


@pytest.fixture(scope="session")
def ray_node():
    """One Ray node of 2 CPUs that the sweeps join with --address. It counts 2 GPUs that it does not have:
    which one a trial sees is Ray's to say, and gpu_trials.py reads it from the record."""
    with ray_cluster([2], gpus=2) as cluster:
        yield cluster


def bench(script: str, *args: str, cwd: Path, timeout: float = 600) -> str:
    """Run benchmarks/SCRIPT --smoke-test ARGS with the shared node's token; its output, once it exits 0."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke-test", *args], cwd=cwd,
                         env=RAY_ENV, capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def most_at_once(trials) -> int:
    """The most trials that ran at the same moment, by the record's start and end of each."""
    edges = sorted([(t.started, 1) for t in trials] + [(t.ended, -1) for t in trials])  # an end before a start
    running = most = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


@pytest.mark.skipif(not DEBIAN_DIR.exists(), reason="needs Debian's dataset-fashion-mnist")
def test_epoch_speed_brackets_each_run_of_ours_and_all_three_ways_learn_alike(tmp_path):
    out = bench("epoch_speed.py", cwd=tmp_path)
    runs = re.findall(r"^  \((\w)\) \w+ +epochs: ([0-9., ]+) s, val_acc ([0-9.]+)$", out, re.MULTILINE)
    assert [name for name, _, _ in runs] == ["a", "c", "b", "c"], out  # (b) between two runs of (c)
    assert all(len(epochs.split(",")) == 2 for _, epochs, _ in runs), out  # --smoke-test: 2 epochs a run
    val_acc = [float(value) for _, _, value in runs]
    # The same MLP on the same 2,000 images: each way learns (chance is 0.1), and about as well as the others.
    assert min(val_acc) >= 0.6 and max(val_acc) - min(val_acc) <= 0.1, out


def test_sweep_efficiency_counts_the_trials_it_ran_side_by_side_and_their_workers(tmp_path):
    out = bench("sweep_efficiency.py", "--storage-path", str(tmp_path), cwd=tmp_path)
    state = read(tmp_path / "bench")
    trials = list(state.trials.values())
    assert len(trials) == 4 and all(t.status == Status.COMPLETED and t.steps == 1 for t in trials), out
    concurrency = int(re.search(r"(\d+) at a time", out).group(1))
    assert concurrency == 2 and most_at_once(trials) == concurrency, out  # 2 cores, 1 CPU a trial
    # The peak memory is that of the whole tree, the trial workers' too.
    assert f"{concurrency} of them trial workers" in out, out


def test_early_stopping_trains_fewer_epochs_and_keeps_the_best_trial(ray_node, tmp_path):
    out = bench("early_stopping_gain.py", "--address", ray_node.address, "--storage-path", str(tmp_path), cwd=tmp_path)
    pruned, completed, full = (read(tmp_path / f"variant{i}") for i in (1, 2, 3))
    assert all(t.status == Status.COMPLETED and t.steps == 3 for t in full.trials.values()), out
    epochs = {name: sum(t.steps for t in state.trials.values()) for name, state in [("asha", pruned), ("full", full)]}
    assert epochs["asha"] < epochs["full"], out
    best = {name: state.best().value("val_acc", "max") for name, state in [("asha", pruned), ("full", full)]}
    assert best["asha"] >= best["full"] - SMOKE_BEST_MARGIN, out
    # What (1) and (2) compare: how Optuna was told of the trials that ASHA stopped (there are some in each).
    for state, told in [(pruned, "PRUNED"), (completed, "COMPLETE")]:
        study = load_study(tmp_path / state.spec["name"], state.spec["name"])
        stopped = {t.number for t in state.trials.values() if t.status == Status.STOPPED}
        assert stopped and {study.trials[n].state.name for n in stopped} == {told}, out


def test_report_speed_times_a_report_with_a_row_per_trial(ray_node, tmp_path):
    out = bench("report_speed.py", "--address", ray_node.address, "--storage-path", str(tmp_path), cwd=tmp_path)
    experiment_dir = tmp_path / "report_speed"
    numbers = sorted(read(experiment_dir).trials)
    assert len(numbers) == 6 and "report of 6 trials" in out, out
    # The benchmark deleted the sweep's own report before it timed `sweep report`: these files are that command's.
    page = (experiment_dir / REPORT_HTML).read_text()
    body = re.search(r'<table id="trials">.*?<tbody>(.*?)</tbody>', page, re.DOTALL).group(1)
    assert [int(n) for n in re.findall(r"<tr[^>]*><td>(\d+)</td>", body)] == numbers
    assert len(list(experiment_dir.glob("*.png"))) == 4, out  # history, parallel coordinates, importance, curves


def test_a_checkpoint_continues_a_stopped_trial_past_its_recorded_epochs_and_none_keeps_nothing(ray_node, tmp_path):
    bench("checkpoint_cost.py", "--epoch-only", "--address", ray_node.address, "--storage-path", str(tmp_path),
          cwd=tmp_path)  # fmt: skip
    every = tmp_path / "stopped-every-epoch"
    before, after = reports_by_attempt(every)[1], reports_by_attempt(every)[2]
    recorded = before[-1]["step"]
    assert recorded >= 2, before  # stopped once the record held two epochs
    # No epoch the record held was trained again: what the continuation reports of them is what was recorded
    # (the same epoch times), sent again from the checkpoint. From scratch, epoch 1 would be trained anew.
    again = [report for report in after if report["step"] <= recorded]
    assert all(report in before for report in again), (before, after)
    trial = read(every).trials[0]
    assert trial.status == Status.COMPLETED and [r["step"] for r in trial.results] == list(range(1, 9))
    none = tmp_path / "stopped-none"
    assert read(none).trials[0].status == Status.INTERRUPTED
    assert not (trial_dir(none, 0) / CHECKPOINT).exists()


def test_startup_phases_come_in_order_and_a_bad_file_is_refused_for_its_key(tmp_path):
    out = bench("startup.py", "--storage-path", str(tmp_path), cwd=tmp_path)
    marks = [float(t) for t in re.findall(r" at ([0-9.]+) s", out.splitlines()[1])]
    # The start line, the first and the last trial's line, the summary, the final run's line, the exit.
    assert len(marks) == 6 and marks == sorted(marks), out
    assert "key 'parameters.fc3': not a flag" in out, out
    (quickstart,) = tmp_path.glob("q*")
    state = read(quickstart)
    assert len(state.trials) == 2 and all(t.status != Status.INTERRUPTED for t in state.trials.values())
    assert (quickstart / "final").is_dir()


def test_worker_memory_samples_this_sweeps_two_workers_after_their_imports(ray_node, tmp_path):
    out = bench("worker_memory.py", "--address", ray_node.address, "--storage-path", str(tmp_path), cwd=tmp_path)
    state = read(tmp_path / "worker_memory")
    assert [t.steps for t in state.trials.values()] == [2, 2], out
    workers = [int(rss) for rss in re.findall(r"peak RSS (\d+) MB = ", out)]
    imports = int(re.search(r"= (\d+) MB RSS, \d+ MB private: what a worker holds", out).group(1))
    # Its two trials ran side by side on 2 CPUs, a worker each; each sampled once it mapped what its imports
    # map (RSS: how much of it is private depends on what else maps the same libraries at the time).
    assert len(workers) == 2 and min(workers) >= 0.9 * imports, out


def test_program_overhead_times_both_trees_for_both_programs(tmp_path):
    out = bench("program_overhead.py", cwd=tmp_path)
    for program in ("print_loss", "wandb_loss"):
        for tree in ("baseline (HEAD)", "this tree"):
            line = rf"{program} +{re.escape(tree)} +whole ([0-9.]+) s  tail +([0-9.]+) ms"
            whole, tail = re.search(line, out).groups()
            assert float(tail) / 1000 <= float(whole), out  # the tail is part of the whole run


def test_gpu_check_says_in_one_line_that_there_is_no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run benchmarks/gpu_check.sh itself")
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert run.returncode == 1 and run.stderr == ""
    assert run.stdout == "gpu_check: no CUDA GPU on this machine (nvidia-smi finds none): nothing to check\n"


GRID = "method: grid\nrun: {data_class: MNISTSample, max_epochs: 1}\nparameters: {fc1: {values: [16, 32, 64, 128]}}\n"
PAIR = GRID.replace(", 64, 128]", "]")  # two trials


def gpu_record(folder: Path, gpus: list[str], peak_mib: float = 250.0, together: bool = True):
    """A record of one-epoch trials that saw these GPU ids, all at the same time or one after another."""

    def trial(number: int) -> list[dict]:
        metrics = {"val_acc": 0.9, "val_loss": 0.3, "gpu_peak_mb": peak_mib}
        return [{"event": "trial", "trial": number, "params": {"fc1": 16 * 2**number}},
                {"event": "start", "trial": number, "attempt": 1},
                {"event": "result", "trial": number, "step": 1, "metrics": metrics, "step_time_s": 0.5,
                 "node": "n1", "gpus": gpus[number]}]  # fmt: skip

    def end(number: int) -> list[dict]:
        return [{"event": "end", "trial": number, "status": "completed", "reason": ""}]

    numbers = range(len(gpus))
    if together:
        events = [e for n in numbers for e in trial(n)] + [e for n in numbers for e in end(n)]
    else:
        events = [e for n in numbers for e in trial(n) + end(n)]
    return sorted(write_record(folder, GRID, events).trials.values(), key=lambda t: t.number)


def test_gpu_check_asserts_distinct_gpus_shared_gpus_and_the_memory_bound(tmp_path):
    assert failure(gpu_record(tmp_path / "a", ["0", "1"]), 1) == ""
    assert failure(gpu_record(tmp_path / "b", ["0", "0"], together=False), 1) == ""  # one GPU, one at a time
    assert "ran at the same time on GPU ['0']" in failure(gpu_record(tmp_path / "c", ["0", "0"]), 1)
    assert "one expected" in failure(gpu_record(tmp_path / "d", ["0,1", "2"]), 1)
    assert failure(gpu_record(tmp_path / "e", ["0"] * 4), 0.25) == ""
    assert "no two trials that ran at the same time shared" in failure(gpu_record(tmp_path / "f", ["0", "1"]), 0.25)
    assert "saw no GPU" in failure(gpu_record(tmp_path / "g", ["", "0"]), 1)
    assert "over the 1024 MiB bound" in failure(gpu_record(tmp_path / "h", ["0", "1"], peak_mib=3000), 1)


def test_gpu_check_reads_the_gpus_each_trial_saw_from_a_real_record(ray_node, tmp_path):
    """On the node that counts 2 GPUs without CUDA, two trials at 1 GPU each see GPUs 0 and 1 side by side:
    every GPU assertion holds, and only the memory check fails (no CUDA in the trials)."""
    space = tmp_path / "gpus.yaml"
    space.write_text(PAIR)
    sweep = [str(Path(sys.executable).parent / "sweep"), "run", str(space), "--gpus-per-trial", "1", "--address",
             ray_node.address, "--storage-path", str(tmp_path), "--name", "gpus"]  # fmt: skip
    assert subprocess.run(sweep, env=RAY_ENV, capture_output=True, timeout=300).returncode == 0
    check = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_trials.py"), str(tmp_path / "gpus"),
                            "--gpus-per-trial", "1"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert re.findall(r"trial \d: GPUs (\d)", check.stdout) in (["0", "1"], ["1", "0"]), check.stdout
    assert "pairs that ran at the same time: 1;" in check.stdout
    assert check.returncode == 1
    assert check.stderr == "--gpus-per-trial 1: trial 0 reported no gpu_peak_mb: CUDA was not available in its worker\n"
