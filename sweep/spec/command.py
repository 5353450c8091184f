"""A program's command line, built as W&B's agent (`wandb` 0.31, `wandb/wandb_agent.py` and
`create_sweep_command_args` in `wandb/sdk/launch/sweeps/utils.py`) builds it from a sweep file.

A lean module (no Ray, no torch): the spec reader checks a command with it, the trial and the final run
build one.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")  # W&B's default
ARGUMENT_MACROS = (
    "args",  # --name=value
    "args_no_equals",  # --name value
    "args_no_hyphens",  # name=value (Hydra)
    "args_no_boolean_flags",  # --name=value, --name for true, nothing for false
    "args_json",  # one argument: the values as JSON
    "args_json_file",  # one argument: a file holding that JSON
    "args_append_hydra",  # +name=value
    "args_override_hydra",  # ++name=value
)
MACROS = ("env", "interpreter", "program", *ARGUMENT_MACROS)
ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")  # W&B's ${envvar:NAME}: the variable's value, or NAME
IN_PROCESS_MACROS = {
    "${env}",
    "${interpreter}",
    "${program}",
    "${args}",
    "${args_no_equals}",
    "${args_no_boolean_flags}",
}


def unknown_macro(chunk: str) -> str | None:
    """The name of a `${...}` chunk that is no macro of W&B's agent (which would drop it silently), or None."""
    chunk = ENVVAR.sub("", chunk)
    if chunk.startswith("${") and chunk.endswith("}") and chunk[2:-1] not in MACROS:
        return chunk
    return None


def argument_formats(args: dict) -> dict[str, list[str]]:
    """Every argument macro's expansion for these values, formatted as W&B's agent formats them: Python's
    str() of each value (`True`, `None`, `[1, 2]`, `{'a': 1}`), in the order given."""
    formats: dict[str, list[str]] = {macro: [] for macro in ARGUMENT_MACROS}
    for name, value in args.items():
        pair = f"{name}={value}"
        formats["args"].append(f"--{pair}")
        formats["args_no_hyphens"].append(pair)
        formats["args_no_equals"] += [f"--{name}", str(value)]
        formats["args_append_hydra"].append(f"+{pair}")
        formats["args_override_hydra"].append(f"++{pair}")
        if not isinstance(value, bool):
            formats["args_no_boolean_flags"].append(f"--{pair}")
        elif value:
            formats["args_no_boolean_flags"].append(f"--{name}")
    formats["args_json"] = [json.dumps(args)]
    return formats


@dataclass(frozen=True)
class Program:
    """A sweep file's `program` and `command`: what each trial runs, from `cwd` (where `sweep run` started)."""

    path: str | None  # `program` as written, relative to cwd; None where the command names no ${program}
    command: tuple[str, ...]
    cwd: str
    fixed: dict = field(default_factory=dict)  # the file's constants (`value: x`), passed like the rest
    nested: dict = field(default_factory=dict)  # flat name ('optimizer.lr') -> path, for nested `parameters`
    environ: dict = field(default_factory=dict)  # WANDB_MODE and such as the driver had them

    def args(self, values: dict) -> dict:
        """The run's arguments, constants and searched values nested as W&B nests them (a dotted name of a
        nested `parameters` block goes into its mapping), ordered by name as W&B's sweep server orders them."""
        merged: dict = {}
        paths = {name: self.nested.get(name, (name,)) for name in {**self.fixed, **values}}
        for name in sorted(paths, key=paths.get):
            value = values[name] if name in values else self.fixed[name]
            *parents, leaf = paths[name]
            target = merged
            for parent in parents:
                target = target.setdefault(parent, {})
            target[leaf] = value
        return merged

    def command_line(self, args: dict, json_file: Path, interpreter: str = sys.executable) -> list[str]:
        """The command with every macro expanded; writes `json_file` when the command asks for it."""
        formats = argument_formats(args)
        expansions = {
            **formats,
            "env": ["/usr/bin/env"],
            "interpreter": [interpreter],  # W&B's agent writes `python`; this is the Python running the sweep
            "program": [self.path] if self.path else [],
            "args_json_file": [str(json_file)],
        }
        line = []
        for chunk in self.command:
            chunk = ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), str(chunk))
            if chunk == "${args_json_file}":
                json_file.parent.mkdir(parents=True, exist_ok=True)
                json_file.write_text(formats["args_json"][0])
            if chunk.startswith("${") and chunk.endswith("}"):
                line += expansions[chunk[2:-1]]
            else:
                line.append(chunk)
        return line
