"""What a program trial costs beyond its program: `program_run.start` + `rows()` + `end()` for trivial
programs, this tree's sweep/trials against another git revision's (the baseline), alternated in one run.

    python benchmarks/program_overhead.py                     # baseline HEAD, 10 runs of each
    python benchmarks/program_overhead.py --baseline 9baa668  # before the guard let go of the program's output
    python benchmarks/program_overhead.py --smoke-test        # 1 run of each

Two programs: `print("loss=1")` (no W&B), and wandb.init / log / finish offline. For each run: `whole`, from
start() to end() returning; `tail`, from the program's exit (the guard's 'exit' line) to rows() ending, the
time the trial waits for nothing once its program is done. Medians over the runs, and baseline / this tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script run from anywhere imports this tree's sweep package

from sweep.spec.command import DEFAULT_COMMAND, Program  # noqa: E402

TRIALS = Path("sweep/trials")
FILES = [TRIALS / "program_run.py", TRIALS / "guard.py", TRIALS / "wandb_hook" / "sitecustomize.py"]
PROGRAMS = {  # named apart from the packages they import
    "print_loss": 'print("loss=1")\n',
    "wandb_loss": 'import wandb\nrun = wandb.init()\nrun.log({"loss": 1.0})\nrun.finish()\n',
}


def load(name: str, trials_dir: Path):
    """program_run.py of a sweep/trials folder, with its own guard and hook beside it."""
    spec = importlib.util.spec_from_file_location(name, trials_dir / "program_run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def baseline_trials(revision: str, into: Path) -> Path:
    for path in FILES:
        source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout  # fmt: skip
        (into / path).parent.mkdir(parents=True, exist_ok=True)
        (into / path).write_text(source)
    return into / TRIALS


def one_run(module, program: Program, run_dir: Path) -> tuple[float, float]:
    """(whole, tail) seconds of one run of the program."""
    started = time.monotonic()
    run = module.start(program, {"lr": 0.1}, run_dir, "bench", "bench")
    exited_at: list[float] = []

    def note_exit() -> None:
        run.exited.wait()
        exited_at.append(time.monotonic())

    noting = threading.Thread(target=note_exit, daemon=True)
    noting.start()
    rows = list(run.rows())
    rows_ended = time.monotonic()
    run.end()
    whole = time.monotonic() - started
    noting.join()  # its clock may read after rows() ended, when it woke after rows() saw the exit itself
    if not any(row.get("loss") == 1.0 for row in rows) or run.failure("loss", len(rows)):
        raise SystemExit(f"program_overhead: the program's loss was not read: {rows} {run.failure('loss', 1)}")
    return whole, max(0.0, rows_ended - exited_at[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each program with each tree")
    parser.add_argument("--baseline", default="HEAD", help="the git revision to compare this tree with")
    parser.add_argument("--smoke-test", action="store_true", help="1 run of each")
    args = parser.parse_args()
    runs = 1 if args.smoke_test else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {
            f"baseline ({args.baseline})": load("baseline_program_run", baseline_trials(args.baseline, tmp / "base")),
            "this tree": load("this_program_run", ROOT / TRIALS),
        }
        for name, source in PROGRAMS.items():
            (tmp / f"{name}.py").write_text(source)
        print(f"program_overhead: {runs} run(s) of each program with each tree, alternated; Python "
              f"{sys.version.split()[0]}")  # fmt: skip
        for name in PROGRAMS:
            program = Program(path=f"{name}.py", command=DEFAULT_COMMAND, cwd=str(tmp))
            times: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
            for i in range(runs):
                for tree, module in trees.items():
                    times[tree].append(one_run(module, program, tmp / "runs" / f"{name}-{tree[:4]}-{i}"))
            medians = {tree: [statistics.median(t[k] for t in runs_) for k in (0, 1)] for tree, runs_ in times.items()}
            for tree, (whole, tail) in medians.items():
                print(f"  {name:10} {tree:20} whole {whole:.3f} s  tail {tail * 1000:6.1f} ms  (median of {runs})")
            (base_whole, base_tail), (whole, tail) = medians.values()
            print(f"  {name:10} baseline / this tree: whole {base_whole / whole:.2f}x; "
                  f"{base_whole - whole:.3f} s less a run, of which the tail {base_tail - tail:.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
