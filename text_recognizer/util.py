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
    """argparse, but a bad flag is one line (no usage block) naming the flag, then exit code 2; and no
    abbreviations (`--num-sample 2` is no --num-samples, `--gpus 0` no --gpus-per-trial)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

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


def made_by(folders: list[Path]):
    """The folders of these that do not exist yet: remove them again with `remove_if_empty`."""
    return [folder for folder in folders if not folder.exists()]


def remove_if_empty(folders: list[Path]) -> None:
    """After a failed download: no empty folder is left to look like a dataset."""
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


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


# YAML 1.1 reads a number with an exponent but no dot (1e-5, 3e4) as a string; a person means the number.
EXPONENT_FLOAT = r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"


def yaml_loader(duplicates: list[tuple]):
    """A safe YAML loader that reads 1e-5 as a number and notes each key given twice in a mapping (YAML
    keeps the last one, and so does W&B's loader) as (key, line) in `duplicates`."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key in seen:
                    duplicates.append((key, key_node.start_mark.line + 1))
                seen.add(key)
            return super().construct_mapping(node, deep)

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(EXPONENT_FLOAT), list("-+0123456789."))
    return Loader


def load_yaml_mapping(path: str | Path, warnings: list[str] | None = None) -> dict:
    """A YAML file that must hold a mapping; every problem is a one-line UserError naming the file. A key
    given twice keeps its last value, with a line in `warnings`."""
    import yaml

    path = Path(path)
    duplicates: list[tuple] = []
    try:
        with open(path) as f:
            content = yaml.load(f, Loader=yaml_loader(duplicates))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: expected a mapping of keys to values at the top level")
    if warnings is not None:
        warnings += [
            f"{path}: key '{key}' is given again at line {line}: the last value is used, as YAML and W&B read it"
            for key, line in duplicates
        ]
    return content
