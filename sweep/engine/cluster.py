"""Ray: start or join it, say where its dashboard is, and fit trials to its resources."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from text_recognizer.util import UserError

if TYPE_CHECKING:
    from sweep.spec.spec import SweepSpec


REACH_TIMEOUT_S = 5.0  # ray.init retries an address where nothing listens for a minute or more


def check_reachable(address: str) -> None:
    """A HOST:PORT where nothing listens is one line within seconds, not a minute of Ray's retries."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():  # auto, ray://...: Ray's own resolution
        return
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): start its head with "
            f"`ray start --head --port={port}`, or pass the head's address as --address HOST:PORT"
        ) from None


def start_ray(address: str | None, log_to_driver: bool = False, dashboard_host: str = "127.0.0.1",
              runtime_env: dict | None = None):  # fmt: skip
    """Start a local Ray (its dashboard on `dashboard_host`), or join the cluster at `address`; returns
    Ray's context. Trials' own output stays in their log files (the dashboard shows them) unless
    `log_to_driver`. `runtime_env`: the job's (a program's working_dir, shipped to every node)."""
    import ray

    if address:
        check_reachable(address)
    if log_to_driver:  # the trials' own lines, each of them: Ray would fold lines that differ in numbers only
        os.environ["RAY_DEDUP_LOGS"] = "0"
    if not address:
        with shipping(runtime_env):
            return ray.init(include_dashboard=True, dashboard_host=dashboard_host, logging_level="ERROR",
                            log_to_driver=log_to_driver, runtime_env=runtime_env)  # fmt: skip
    # Ray's client retries a refused token for ~30 s with a line on stderr each time: those lines are kept
    # aside, and a refusal is one line that says what to do.
    with tempfile.TemporaryFile("w+") as aside:
        stderr = os.dup(2)
        os.dup2(aside.fileno(), 2)
        try:
            with shipping(runtime_env):
                return ray.init(address=address, logging_level="ERROR", log_to_driver=log_to_driver,
                                runtime_env=runtime_env)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            aside.seek(0)
            if "auth" in (problem + aside.read()).lower() and os.environ.get("RAY_AUTH_MODE") != "token":
                raise UserError(
                    f"the Ray cluster at {address} asks for a token (Ray's token authentication): set "
                    "RAY_AUTH_MODE=token for this command (and the cluster's token in ~/.ray/auth_token)"
                ) from None
            raise UserError(f"cannot connect to the Ray cluster at {address}: {problem}") from None
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)


def shipped_program(spec: SweepSpec, experiment_remote: bool) -> dict | None:
    """Ray's runtime_env for a program's sweep whose experiment is in object storage, where nodes are assumed
    to share no filesystem: the program's directory, shipped by Ray to every node and each trial's working
    directory there (Tune's RAY_CHDIR_TO_TRIAL_DIR=0: Tune would move it into its own trial directory)."""
    if spec.program is None or not experiment_remote:
        return None
    return {"working_dir": spec.program.cwd, "env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}}


@contextlib.contextmanager
def shipping(runtime_env: dict | None):
    """A program's directory too large for Ray to ship (its limit is the size of one gRPC message) is one line."""
    try:
        yield
    except ValueError as exc:
        if runtime_env and "exceeds the maximum size" in str(exc):
            size = str(exc).split(". To exclude")[0]
            raise UserError(
                f"the program's directory {runtime_env['working_dir']}, which Ray ships to every node: {size}; "
                "leave data out with .gitignore or .rayignore"
            ) from None
        raise


class RayStart:
    """`start_ray(address)` in the background, so that the driver imports Ray Tune and decodes the data
    meanwhile (it imports no torch). The thread stays alive until the process ends:
    Ray starts its processes with a parent-death signal, which Linux sends when the *thread* that started
    them exits. Call `shutdown()` before exiting: the agents that Ray's raylet starts outlive a killed Ray.

    Joining a cluster takes under a second, and is done by `result()`, in the calling thread (in a thread
    beside an import of torch, when the driver still imported it, it crashed a Ray Job's driver: "oneMKL
    FATAL ERROR: Cannot load libtorch_cpu.so", then SIGSEGV).
    """

    def __init__(self, address: str | None, **options):
        self.started: Future = Future()  # Ray's context, or start_ray's error
        # A Ray Job's driver (`ray job submit ... -- python -m sweep run ...`) is told its cluster this way.
        self.joining = (address or os.environ.get("RAY_ADDRESS"), options)
        if not self.joining[0]:
            threading.Thread(target=self._run, args=(address, options), name="ray-start", daemon=True).start()

    @property
    def address(self) -> str | None:
        """The cluster joined; None for a local Ray."""
        return self.joining[0]

    def _run(self, address: str | None, options: dict) -> None:
        try:
            self.started.set_result(start_ray(address, **options))
        except BaseException as exc:  # raised again by result()
            self.started.set_exception(exc)
        threading.Event().wait()  # never returns: see the class docstring

    def result(self):
        """Ray's context, once it has started; start_ray's error if it failed."""
        address, options = self.joining
        if address and not self.started.done():
            try:
                self.started.set_result(start_ray(address, **options))
            except BaseException as exc:
                self.started.set_exception(exc)
        return self.started.result()

    def shutdown(self) -> None:
        """Stop the Ray this started or joined, once its start has ended; a second call does nothing."""
        if self.joining[0] and not self.started.done():
            return  # never joined
        if self.started.exception() is None:
            import gc

            import ray

            # Ray's handles left as garbage (Tune's) are freed now, while Ray is up, and none by a collection in
            # another thread (the report's) while it stops: Ray ends the process (exit status 1, mid-output)
            # when one reaches its core worker in the middle of its shutdown.
            gc.collect()
            gc.disable()
            try:
                ray.shutdown()
            finally:
                gc.enable()


def dashboard_text(context) -> str:
    """'; Ray dashboard http://... (log in with the token in ~/.ray/auth_token)' for the start line, or ''."""
    if not context.dashboard_url:
        return ""
    token = "$RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else Path.home() / ".ray" / "auth_token"
    uses_token = os.environ.get("RAY_AUTH_MODE", "token") == "token"  # Ray 2.60's default for a local Ray
    auth = f" (log in with the token in {token})" if uses_token else ""
    exposed = not context.dashboard_url.startswith(("127.0.0.1:", "localhost:"))
    if exposed:  # the dashboard can start jobs on the cluster: only the token stands in the way
        auth += " (WARNING: reachable beyond this machine; the token is what protects it)"
    return f"; Ray dashboard http://{context.dashboard_url}{auth}"


def trial_concurrency(spec: SweepSpec, resources: dict, trials: int) -> int:
    """How many trials fit side by side; asking for more than the cluster has is an error, not a hang."""
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    there = f"the Ray cluster has {cpus:g} CPU and {gpus:g} GPU"
    if spec.gpus_per_trial > gpus:
        raise UserError(
            f"--gpus-per-trial {spec.gpus_per_trial:g} asks for more GPUs than there are ({there}); "
            "use --gpus-per-trial 0 to train on CPUs"
        )
    if spec.cpus_per_trial > cpus:
        raise UserError(f"--cpus-per-trial {spec.cpus_per_trial:g} asks for more CPUs than there are ({there})")
    fits = math.floor(cpus / spec.cpus_per_trial + 1e-9)
    if spec.gpus_per_trial:
        fits = min(fits, math.floor(gpus / spec.gpus_per_trial + 1e-9))
    return max(1, min(fits, spec.max_concurrent or fits, trials))
