"""Runs a trial's program in a process group of its own, and ends that whole group when the trial is done
with it, or when the trial worker that started it dies (Ray kills its workers when a sweep ends or is
interrupted and when a node is lost, and a killed worker can end nothing itself).

    python -S sweep/trials/guard.py CONTROL_FD STATUS_FD COMMAND...

The guard forks and the first process exits at once: Ray kills a dead worker's child processes, and the
guard must outlive the worker to clean up after it. CONTROL_FD is a pipe from the worker: when it closes
(the worker closed it, or died), the program's group gets SIGTERM, and SIGKILL after GRACE_S; a program
that ignores SIGTERM, and its children, end all the same. The guard writes 'group PGID' and, once the
program exits by itself, 'exit CODE' to STATUS_FD, and exits once the group is empty. It lets go of the
program's stdout and stderr as soon as the program has them: their readers see their end when the program
(and any child that holds them) has exited.
"""

import os
import signal
import subprocess
import sys
import threading
import time

GRACE_S = 3.0  # for a program to save and exit after SIGTERM


def end_group(program: subprocess.Popen) -> None:
    """SIGTERM to the program's group; SIGKILL to what is left of it after GRACE_S."""
    deadline = time.monotonic() + GRACE_S
    try:
        os.killpg(program.pid, signal.SIGTERM)
        while time.monotonic() < deadline:
            time.sleep(0.05)
            program.poll()  # reaped: a zombie would still count as one of the group
            os.killpg(program.pid, 0)  # ProcessLookupError once the group is empty
        os.killpg(program.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main() -> int:
    control, status = int(sys.argv[1]), int(sys.argv[2])
    if os.fork():
        os._exit(0)  # the worker's child exits; this process runs on
    program = subprocess.Popen(sys.argv[3:], process_group=0)
    # The program and its children now hold the trial's stdout and stderr; the guard's own copies would keep
    # them open until it exits, after the trial is done reading, so the trial would not see their end when
    # the program's output ends. The guard prints nothing.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    os.write(status, f"group {program.pid}\n".encode())
    released = threading.Event()
    woken = threading.Event()  # the program has exited, or the worker let go of it: whichever comes first

    def wait_for_release() -> None:
        os.read(control, 1)  # returns at EOF: the worker closed the pipe, or died
        released.set()
        woken.set()

    def wait_for_exit() -> None:
        program.wait()
        woken.set()

    threading.Thread(target=wait_for_release, daemon=True).start()
    threading.Thread(target=wait_for_exit, daemon=True).start()
    woken.wait()
    if program.poll() is not None:
        os.write(status, f"exit {program.returncode}\n".encode())
        released.wait()  # the worker reads the program's last output first
    end_group(program)
    program.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
