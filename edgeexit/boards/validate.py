"""Typed access to one TOML table, with one-line errors naming the file and the key."""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Dict, List, Optional

from edgeexit.errors import BoardConfigError

_MISSING = object()


class Table:
    """A TOML table plus where it came from (``file`` and the dotted ``prefix`` of its keys)."""

    def __init__(self, data: Dict[str, Any], file: Path, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise BoardConfigError("{}: '{}' must be a table".format(file, prefix or "<top>"))
        self.data = data
        self.file = file
        self.prefix = prefix

    def key(self, name: str) -> str:
        # repr() for odd key names: a newline in a key must not split the one-line error
        shown = name if isinstance(name, str) and name.isprintable() and name else repr(name)
        return "{}.{}".format(self.prefix, shown) if self.prefix else shown

    def fail(self, name: str, why: str) -> BoardConfigError:
        return BoardConfigError("{}: key '{}' {}".format(self.file, self.key(name), why))

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, default: Any) -> Any:
        if name in self.data:
            return self.data[name]
        if default is _MISSING:
            raise self.fail(name, "is missing")
        return default

    def str(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, str):
            raise self.fail(name, "must be a string, not {!r}".format(value))
        return value

    def int(self, name: str, default: Any = _MISSING, minimum: Optional[int] = None) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "must be an integer, not {!r}".format(value))
        if minimum is not None and value < minimum:
            raise self.fail(name, "must be >= {}, not {}".format(minimum, value))
        return value

    def num(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(name, "must be a number, not {!r}".format(value))
        return float(value)

    def str_list(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        return list(value)

    def int_list(self, name: str, default: Any = _MISSING, ascending: bool = False) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.fail(name, "must be a list of integers")
        if ascending and (not value or any(b <= a for a, b in zip(value, value[1:]))):
            raise self.fail(name, "must be a non-empty, strictly ascending list")
        return list(value)

    def table(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        return Table(value, self.file, self.key(name))

    def tables(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if not isinstance(value, list):
            raise self.fail(name, "must be an array of tables ([[{}]])".format(self.key(name)))
        return [Table(v, self.file, "{}[{}]".format(self.key(name), i)) for i, v in enumerate(value)]

    def relpath(self, name: str, default: Any = _MISSING) -> Any:
        value = self.str(name, default)
        if value is default:
            return value
        check_relpath(value, self, name)
        return value

    def relpath_list(self, name: str, default: Any = _MISSING) -> Any:
        value = self.str_list(name, default)
        if value is default:
            return value
        for item in value:
            check_relpath(item, self, name)
        return value

    def unknown_keys(self, allowed: List[str]) -> None:
        extra = sorted(set(self.data) - set(allowed))
        if extra:
            raise self.fail(extra[0], "is not a known key (known: {})".format(", ".join(sorted(allowed))))


def _bad_chars(value: str) -> bool:
    # NUL would make os calls raise ValueError; control characters are never in sysfs names
    return any(ord(c) < 32 or c == "\x7f" for c in value)


def check_relpath(value: str, where: Table, name: str) -> None:
    """Paths in board files are relative to the sysfs root and must stay inside it."""
    norm = posixpath.normpath(value)
    if value.startswith("/") or norm.startswith("..") or ".." in value.split("/") or not value or _bad_chars(value):
        raise where.fail(name, "must be a path relative to the sysfs root without '..' or control characters "
                               "(got {!r})".format(value))


def check_relpath_str(value: str) -> None:
    """Raise ValueError for a path that would leave the sysfs root."""
    if not value or value.startswith("/") or ".." in value.split("/") or _bad_chars(value):
        raise ValueError("sysfs path must be relative to the root without '..': {!r}".format(value))
