"""A program run as W&B's agent runs it, for a trial (on a Ray worker) or for the final run (no Ray).

The program gets its values as W&B's agent gives them: on its command line (the sweep file's `command`,
macros expanded) and in the file named by WANDB_SWEEP_PARAM_PATH, which `wandb.init()` reads into
`wandb.config`; W&B runs offline unless WANDB_MODE says otherwise, its files in the run's directory. What
it logs is read as it happens, from one of two places:

- what it logs with W&B, recorded by `sweep/trials/wandb_hook/sitecustomize.py` (on the program's PYTHONPATH)
  into a JSON-lines file (`wandb.log` calls, summary writes, define_metric calls, and the TensorBoard scalars
  W&B syncs); `History` makes of them the history rows and the summary of the agent's run (the run whose id
  is WANDB_RUN_ID) as wandb-core makes them;
- in a program that does not call `wandb.init`: lines of its stdout with `name=value` pairs
  (`epoch=3 val_loss=0.231`, as Katib's StdOut collector reads them), one row per line.

It runs under `sweep/trials/guard.py`, in a process group of its own, which ends with the run: no process
outlives it. Its stdout and stderr go to `output.log` in the run's directory.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from sweep.spec.command import Program
from sweep.trials.wandb_history import History

HERE = Path(__file__).resolve().parent
GUARD = HERE / "guard.py"
HOOK_DIR = HERE / "wandb_hook"
OUTPUT_WAIT_S = 1.0  # after the program exits, for a child that outlives it and still holds its stdout
OUTPUT_LOG = "output.log"
WANDB_LOG = "wandb-log.jsonl"  # what the program logs with W&B, as the hook records it
# name=value, the name starting with a letter or _ (it may hold / . -), the value a number, nan or inf.
PAIR = re.compile(
    r"(?:^|(?<=[\s,;(\[{]))([A-Za-z_][\w./-]*)\s*=\s*"
    r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity))(?=$|[\s,;)\]}])",
    re.IGNORECASE,
)


def stdout_values(line: str) -> dict[str, float]:
    return {name: float(value) for name, value in PAIR.findall(line)}


class ProgramRun:
    """One run of a program: started at once, read with `rows()`, ended with `end()` (always call it)."""

    def __init__(self, command: list[str], cwd: str, env: dict, run_dir: Path, echo: bool = False):
        self.run_dir = run_dir
        self.log_path = run_dir / OUTPUT_LOG
        self.wandb_log = Path(env["SWEEP_WANDB_LOG"])
        self.run_id = env["WANDB_RUN_ID"]  # the agent's run: W&B's sweep sees this run alone
        self.echo = echo
        self.uses_wandb = False
        self.other_runs: set[str] = set()  # runs of the program's that are not the agent's
        self.history = History()
        self.hook_error = ""
        self.last_error_line = ""
        self.lines: queue.Queue = queue.Queue()
        self.log = open(self.log_path, "a", buffering=1, errors="replace")
        self.log_lock = threading.Lock()
        self.group: int | None = None  # the program's process group
        self.code: int | None = None  # its exit code, once it has exited
        self.exited = threading.Event()  # it has exited, or the guard has ended
        control, guard_control = os.pipe()[::-1]  # the guard ends the program when this closes
        status, guard_status = os.pipe()  # the guard's lines to this
        launcher = subprocess.Popen(
            [sys.executable, "-S", str(GUARD), str(guard_control), str(guard_status), *command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(guard_control, guard_status),
            start_new_session=True,
        )
        os.close(guard_control)
        os.close(guard_status)
        self.control = control
        self.readers = [
            threading.Thread(target=self.read, args=(launcher.stdout, True), daemon=True),
            threading.Thread(target=self.read, args=(launcher.stderr, False), daemon=True),
            threading.Thread(target=self.read_status, args=(status,), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        launcher.wait()  # it forks the guard and exits at once

    def read_status(self, status: int) -> None:
        """The guard's lines: 'group PGID', then 'exit CODE' once the program has exited by itself."""
        with os.fdopen(status) as lines:
            for line in lines:
                word, number = line.split()
                if word == "group":
                    self.group = int(number)
                else:
                    self.code = int(number)
                    self.exited.set()
                    self.lines.put(None)  # wakes rows()
        self.exited.set()  # the guard has ended
        self.lines.put(None)

    def read(self, pipe, is_stdout: bool) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode(errors="replace")
            with self.log_lock:
                self.log.write(line)
            if self.echo:
                (sys.stdout if is_stdout else sys.stderr).write(line)
            text = line.rstrip("\n").split("\r")[-1].strip()  # a progress bar's last redraw
            if is_stdout:
                self.lines.put(text)
            elif text and not text.startswith("wandb:"):  # W&B's own lines come after a program's error
                self.last_error_line = text
        self.lines.put(None)  # the end of its output: wakes rows()

    def rows(self):
        """Each row of values the program logs, as it logs it, until it exits: for a program that calls
        wandb.init, the rows of its agent's run's history as W&B commits them (keys flattened with '.', numbers
        only, its step as `_step`); else a row for each stdout line with name=value pairs."""
        offset, exited = 0, None
        while True:
            if exited is None and self.exited.is_set():
                exited = time.monotonic()
            # Its output is read to the end; a child that outlives it and holds its stdout is not waited for.
            ended = exited is not None and (
                not any(r.is_alive() for r in self.readers[:2]) or time.monotonic() - exited > OUTPUT_WAIT_S
            )
            printed = []
            try:
                printed.append(self.lines.get(block=not ended, timeout=0.05))
                while True:
                    printed.append(self.lines.get_nowait())
            except queue.Empty:
                pass
            printed = [line for line in printed if line is not None]  # None: a wake-up
            # The hook's lines are read after stdout's: a program that called wandb.init before printing
            # is known to use W&B before its printed lines are looked at.
            records, offset = self.read_wandb_log(offset)
            for record in records:
                if "error" in record:
                    self.hook_error = record["error"]
                elif "init" in record:
                    self.uses_wandb = True
                    if record["init"] != self.run_id:
                        self.other_runs.add(str(record["init"]))
                elif record.get("run") == self.run_id:
                    yield from self.history.apply(record)
            if not self.uses_wandb:
                yield from filter(None, map(stdout_values, printed))
            if ended and self.lines.empty():
                yield from self.history.end()
                return

    def summary(self) -> dict:
        """The agent's run's summary as W&B keeps it, once `rows()` is exhausted: by default each key's last
        logged value, or what `run.summary` was given after it; a mapping such as {"min": 0.1} where
        define_metric(summary=...) asked for one (W&B's sweep search skips those). Keys as in the rows."""
        return self.history.summary()

    def read_wandb_log(self, offset: int) -> tuple[list[dict], int]:
        try:
            with open(self.wandb_log, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            return [], offset
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        return [json.loads(line) for line in complete.splitlines() if line.strip()], offset + len(complete)

    def failure(self, metric: str | None, reported: int) -> str:
        """Why the run failed, in one line, or '' if it did not. `reported`: how many rows held the metric; a
        metric only in the summary (`run.summary[metric] = v`, no `wandb.log`) counts too. A sweep without a
        metric (None) asks only that the program succeed."""
        if self.hook_error:
            return self.hook_error
        if self.code is None or self.code < 0:
            how = f"killed by signal {-self.code}" if self.code else "ended before it could say"
            return f"the program was {how}: {self.last_error_line or 'no error on stderr'}"
        if self.code:
            return f"exit code {self.code}: {self.last_error_line or 'no error on stderr'}"
        summary = self.summary()
        if metric is not None and not reported and metric not in summary:
            if self.other_runs and not summary:  # the agent's run got nothing
                runs = ", ".join(sorted(self.other_runs))
                return (
                    f"the program logged to W&B run {runs}, not to the agent's run {self.run_id} (WANDB_RUN_ID), "
                    "which alone counts: wandb.init(id=...) or reinit='create_new' starts another"
                )
            how = f"wandb.log({{'{metric}': ...}}) or run.summary['{metric}'] = ..."
            if not self.uses_wandb:
                how += f", or print a line '{metric}=VALUE' (the program did not call wandb.init)"
            return f"the program ended without logging {metric}: log it with {how}"
        return ""

    def stop(self) -> None:
        """End the program now, without waiting for it (Tune gives a stopped trial 2 s to return before it
        gives up on its worker): the guard ends its group, SIGTERM, then SIGKILL after GRACE_S."""
        self.release()
        threading.Thread(target=self.close, daemon=True).start()

    def end(self) -> None:
        """Once the program has exited: the guard ends what is left of its group (children that outlived
        it), and this returns when the group is empty."""
        self.release()
        self.close()

    def release(self) -> None:
        if self.control is not None:
            os.close(self.control)
            self.control = None

    def close(self) -> None:
        for reader in self.readers:
            reader.join()
        self.log.close()


def start(
    program: Program,
    args: dict,
    run_dir: Path,
    run_id: str,
    sweep_name: str,
    gpu_ids: list[str] | None = None,
    echo: bool = False,
) -> ProgramRun:
    """Start the program with these arguments, files in `run_dir`, as W&B's agent would start run `run_id`.
    `gpu_ids`: the GPUs it may see (Ray's for its trial); None: all of them."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dir = run_dir / "wandb" / f"sweep-{sweep_name}"  # where W&B's agent writes them, under WANDB_DIR
    param_file = config_dir / f"config-{run_id}.yaml"
    config_dir.mkdir(parents=True, exist_ok=True)
    # As W&B's agent writes it (wandb.sdk.lib.config_util.save_config_file_from_dict).
    params = yaml.safe_dump({k: {"value": v} for k, v in args.items()}, sort_keys=False, allow_unicode=True)
    param_file.write_text(f"wandb_version: 1\n\n{params}")
    command = program.command_line(args, config_dir / f"config-{run_id}.json")
    python_path = [str(HOOK_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {
        **os.environ,
        "WANDB_MODE": "offline",  # nothing leaves the machine, unless the user's WANDB_MODE says otherwise
        **program.environ,
        "WANDB_DIR": str(run_dir),
        "WANDB_SWEEP_PARAM_PATH": str(param_file),
        "WANDB_RUN_ID": run_id,
        "SWEEP_WANDB_LOG": str(run_dir / WANDB_LOG),
        "PYTHONPATH": os.pathsep.join(python_path),
        "PYTHONUNBUFFERED": "1",  # printed name=value lines arrive as they are printed
    }
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    (run_dir / WANDB_LOG).unlink(missing_ok=True)  # a trial run again starts from the beginning
    with open(run_dir / OUTPUT_LOG, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
    return ProgramRun(command, program.cwd, env, run_dir, echo)
