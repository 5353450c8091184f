"""Where an experiment lives: a local directory, or a URI of any filesystem pyarrow knows (`s3://bucket/runs/
NAME?endpoint_override=http://host:9000&region=us-east-1`, `gs://...`), for a Ray cluster whose nodes share no
filesystem. Credentials come from the environment (or the provider's usual chain), never from the URI or
the command line, so no object written there, pickled or not, holds a secret.

Object storage cannot append, and a record must be appended: the driver works in a local directory (the
experiment's own, or for a URI a mirror of it in a temporary directory) and uploads what changed, when a
trial ends, every SYNC_EVERY_S while trials run, and at the end. A trial's worker reads and writes its own
directory (its checkpoint, a program's files) there directly (`TrialFiles`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sweep.record.files import EVENTS, TRIALS, trial_name
from text_recognizer.util import UserError

SYNC_EVERY_S = 10.0  # while trials run: what a killed driver's record can lose in the bucket
LIVE_S = 120.0  # a record in object storage uploaded this recently: its driver runs (which uploads it every
# LIVE_S / 2 at least, changed or not)


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def child(location: str, name: str) -> str:
    """A name under a storage location: `s3://b/runs?q` and NAME give `s3://b/runs/NAME?q`."""
    if not is_uri(location):
        return str(Path(location).resolve() / name)
    parts = urlsplit(location)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))


def filesystem(uri: str):
    """(pyarrow filesystem, path in it) of a URI; one line naming the URI where pyarrow knows no such."""
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow's own words: an unknown scheme, an unknown query parameter
        raise UserError(f"{uri}: {str(exc).splitlines()[0]}") from None


def problem(uri: str, exc: Exception) -> UserError:
    line = str(exc).splitlines()[0]
    if "AWS Error" in line:  # S3's own words, less pyarrow's preamble and the request's id
        line = "AWS Error" + line.split("AWS Error", 1)[1].split(" (Request ID")[0]
    return UserError(f"{uri}: {line} (credentials come from the environment, e.g. AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY; the endpoint from the URI's endpoint_override)")  # fmt: skip


class Experiment:
    """An experiment directory: `uri` (what commands take and print), `local` (where the driver works)."""

    def __init__(self, location: str | Path):
        self.uri = str(location) if is_uri(location) else str(Path(location).resolve())
        self.remote = filesystem(self.uri) if is_uri(location) else None
        self.local = Path(self.uri) if self.remote is None else None
        self.pushed: dict[str, tuple[float, int]] = {}  # file (relative path) -> (mtime, size) when uploaded
        self.last_push = self.beat = 0.0  # when files were last uploaded, and the record
        self.warned = False

    def __str__(self) -> str:
        return self.uri

    def exists(self) -> bool:
        """Whether a sweep's record is there."""
        if self.remote is None:
            return (self.local / EVENTS).exists()
        import pyarrow.fs

        fs, path = self.remote
        try:
            return fs.get_file_info(f"{path}/{EVENTS}").type == pyarrow.fs.FileType.File
        except OSError as exc:
            raise problem(self.uri, exc) from None

    def live(self) -> bool | None:
        """Whether a driver runs the sweep, for a reader: the lock says so of a local directory (None); of one
        in object storage, a record uploaded within LIVE_S (a running driver uploads it at least that often)."""
        if self.remote is None:
            return None
        fs, path = self.remote
        try:
            modified = fs.get_file_info(f"{path}/{EVENTS}").mtime
        except OSError:
            return False
        return modified is not None and time.time() - modified.timestamp() < LIVE_S

    def check_writable(self) -> None:
        """A probe written and deleted: bad credentials, a missing bucket or an unreachable endpoint are one
        line naming the URI, before any trial starts."""
        if self.remote is None:
            return
        fs, path = self.remote
        try:
            with fs.open_output_stream(f"{path}/.sweep-probe") as probe:
                probe.write(b"")
            fs.delete_file(f"{path}/.sweep-probe")
        except OSError as exc:
            raise problem(self.uri, exc) from None

    def mirror(self) -> Path:
        """The local directory the driver works in (for a URI: a new one in a temporary directory, not made
        yet, so that `files.claim` makes it; `close` removes it)."""
        if self.local is None:
            self.local = Path(tempfile.mkdtemp(prefix="sweep-experiment-")) / "experiment"
        return self.local

    def pull(self) -> Path:
        """The record and the files made from it, into the local directory (trials' own files stay there)."""
        local = self.mirror()
        if self.remote is None:
            return local
        import pyarrow.fs

        local.mkdir(exist_ok=True)
        fs, path = self.remote
        try:
            for info in fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True)):
                if info.type == pyarrow.fs.FileType.File:
                    pyarrow.fs.copy_files(info.path, str(local / info.base_name), source_filesystem=fs)
        except OSError as exc:
            raise problem(self.uri, exc) from None
        self.pushed = {p.name: stamp(p) for p in local.iterdir() if p.is_file()}
        return local

    def push(self, every_s: float = 0.0, beat: bool = False, strict: bool = False) -> None:
        """Upload the local files that changed since they were last uploaded (at most once per `every_s`);
        with `beat` (the running driver's), the record every LIVE_S / 2 even unchanged: readers take a record
        that old for one whose driver ended. A failed upload is a warning, once, and is tried again next
        time; with `strict`, one line naming it."""
        if self.remote is None or time.monotonic() - self.last_push < every_s:
            return
        import pyarrow.fs

        fs, path = self.remote
        files = sorted(p for p in self.local.rglob("*") if not p.name.startswith("."))  # not locks, files being written
        try:
            for file in files:
                relative = file.relative_to(self.local).as_posix()
                try:
                    now = stamp(file)
                    due = beat and relative == EVENTS and time.monotonic() - self.beat > LIVE_S / 2
                    if file.is_file() and (self.pushed.get(relative) != now or due):
                        pyarrow.fs.copy_files(str(file), f"{path}/{relative}", destination_filesystem=fs)
                        self.pushed[relative] = now
                        self.beat = time.monotonic() if relative == EVENTS else self.beat
                except FileNotFoundError:  # gone since it was listed (a checkpoint removed, a file replaced)
                    continue
        except OSError as exc:
            if strict:
                raise UserError(f"{problem(self.uri, exc)}; the experiment is kept in {self.local}") from None
            if not self.warned:
                print(f"sweep: warning: {problem(self.uri, exc)}; uploads are tried again as the sweep goes on",
                      file=sys.stderr, flush=True)  # fmt: skip
                self.warned = True
        self.last_push = time.monotonic()

    def remove_left_files(self, numbers: list[int], name: str) -> None:
        """The file `name` of each of these trials, where one is left: in a bucket, one listing of its trials'
        files rather than a request a trial."""
        for number in numbers:
            (self.local / trial_name(number) / name).unlink(missing_ok=True)
        if self.remote is None or not numbers:
            return
        import pyarrow.fs

        fs, path = self.remote
        wanted = {f"{path}/{trial_name(number)}/{name}" for number in numbers}
        try:
            for info in fs.get_file_info(pyarrow.fs.FileSelector(f"{path}/{TRIALS}", recursive=True,
                                                                 allow_not_found=True)):  # fmt: skip
                if info.path in wanted:
                    fs.delete_file(info.path)
        except OSError as exc:  # left for the next resume
            print(f"sweep: warning: {problem(self.uri, exc)}", file=sys.stderr, flush=True)

    def remove_trial_file(self, number: int, name: str) -> None:
        (self.local / trial_name(number) / name).unlink(missing_ok=True)
        if self.remote is not None:
            fs, path = self.remote
            try:
                fs.delete_file(f"{path}/{trial_name(number)}/{name}")
            except OSError:  # none there
                pass

    def close(self, upload: bool = True) -> None:
        """A mirror goes once all is uploaded (but for a reader that changed nothing of the experiment's, as
        the dashboard, whose page can edit its copy of the study): the bucket holds the experiment."""
        if self.remote is not None and self.local is not None:
            if upload and self.local.is_dir():  # (a sweep that never started removed it: nothing to upload)
                self.push(strict=True)
            shutil.rmtree(self.local.parent, ignore_errors=True)
            self.local = None


def stamp(file: Path) -> tuple[float, int]:
    stat = file.stat()
    return stat.st_mtime, stat.st_size


class TrialFiles:
    """A trial's own directory, from its worker: on a shared filesystem the directory itself; in object
    storage a local folder whose files are fetched from and stored to the trial's directory there."""

    def __init__(self, experiment_uri: str, number: int):
        self.number = number
        name = trial_name(number)
        self.uri = child(experiment_uri, name)  # for messages
        self.remote = filesystem(experiment_uri) if is_uri(experiment_uri) else None
        if self.remote is None:
            self.folder = Path(experiment_uri) / name
        else:
            self.folder = Path(tempfile.mkdtemp(prefix=f"sweep-trial-{number:04d}-"))
            self.remote = (self.remote[0], f"{self.remote[1]}/{name}")
        self.folder.mkdir(parents=True, exist_ok=True)

    def fetch(self, name: str) -> Path | None:
        """The file `name` of the trial's directory, here; None where there is none."""
        local = self.folder / name
        if self.remote is not None:
            import pyarrow.fs

            fs, path = self.remote
            if fs.get_file_info(f"{path}/{name}").type != pyarrow.fs.FileType.File:
                return None
            pyarrow.fs.copy_files(f"{path}/{name}", str(local), source_filesystem=fs)
        return local if local.exists() else None

    def store(self, name: str) -> None:
        """Upload the file `name` to the trial's directory (a whole object: never half of one)."""
        if self.remote is not None:
            import pyarrow.fs

            fs, path = self.remote
            pyarrow.fs.copy_files(str(self.folder / name), f"{path}/{name}", destination_filesystem=fs)

    def store_all(self, but: str = "") -> None:
        """Upload every file of the folder (a program's output, W&B's offline run), but `but`."""
        for file in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            if file.name != but:
                self.store(file.relative_to(self.folder).as_posix())

    def where(self, name: str) -> str:
        """Where the file `name` is kept, for a message: a local path, or its URI."""
        return str(self.folder / name) if self.remote is None else f"{self.uri.split('?')[0]}/{name}"

    def close(self) -> None:
        if self.remote is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def local_copy(location: str) -> tuple[Experiment, Path]:
    """For a command that reads an experiment (best, report, final, dashboard, a warm start): the experiment
    and a local directory holding its record; for a URI, pulled into a temporary one."""
    experiment = Experiment(location)
    if not experiment.exists():
        raise UserError(f"{experiment.uri}: not a sweep's experiment directory (no record: {EVENTS})")
    return experiment, experiment.pull()
