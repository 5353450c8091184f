"""Reading one YAML mapping: every problem is a UserError naming the file and the key path."""

from __future__ import annotations

from typing import Any

from text_recognizer.config import unknown_key_message
from text_recognizer.util import UserError


class SpecReader:
    """Reads one YAML mapping, raising UserError('<file>: key '<path>': ...') for anything wrong."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, problem: str):
        raise UserError(f"{self.path}: key '{key}': {problem}")

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {value!r}")
        return value

    def number(self, value: Any, key: str, kind: type = float, minimum: float | None = None) -> Any:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            ok = ok and float(value).is_integer()
        if not ok:
            self.fail(key, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value!r}")
        return kind(value)

    def check_keys(self, mapping: dict, key: str, allowed) -> None:
        for sub in mapping:
            if sub not in allowed:
                self.fail(f"{key}.{sub}" if key else sub, unknown_key_message(sub, allowed))
