"""Small helpers shared by the library and the command-line tools."""

from __future__ import annotations

import argparse
import ctypes
import gzip
import os
from pathlib import Path

import numpy as np


class UserError(Exception):
    """Bad input or a missing resource: the CLIs print the message as one line, without a traceback."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (no usage block) naming the flag, then exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def skip_nvml_probe_without_driver() -> None:
    """Stop torch from trying to load NVIDIA's NVML library on every optimizer step where there is none.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, so that torch asks NVML rather than CUDA whether there
    is a GPU. Where NVIDIA's driver is not installed, torch tries to load NVML again at each question,
    fails, and then asks CUDA, as it does without the variable; its optimizers ask once a step (~30 us).
    Where the driver is installed, nothing changes.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")  # the library torch loads
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    # Header: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, then big-endian sizes.
    if raw[2] != 0x08:
        raise UserError(f"{path}: not a uint8 IDX file (type byte {raw[2]:#x}); is the file corrupt?")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_yaml_mapping(path: str | Path) -> dict:
    """A YAML file that must hold a mapping; every problem is a one-line UserError naming the file."""
    import yaml

    path = Path(path)
    try:
        with open(path) as f:
            content = yaml.safe_load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: expected a mapping of keys to values at the top level")
    return content
