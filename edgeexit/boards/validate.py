"""Typed access to one TOML table, with one-line errors naming the file and the key."""
from __future__ import annotations

import math
import posixpath
from pathlib import Path
from typing import Any, Dict, List, Optional

from edgeexit.errors import BoardConfigError

_MISSING = object()
#: Default bounds on any number in a board file, so that no value can overflow a float computation (1e308 * 2,
#: int(10**400) / 1e9); keys with a physical range pass tighter bounds.
NUM_LIMIT = 1e12
INT_LIMIT = 10 ** 15


def _describe_range(minimum: Any, maximum: Any, min_open: bool = False) -> str:
    """'between 1 and 5000', '> 0 and <= 1e+06', '>= 0' ..., for an error message."""
    if minimum is not None and maximum is not None and not min_open:
        return "between {:g} and {:g}".format(minimum, maximum)
    parts = []
    if minimum is not None:
        parts.append("{} {:g}".format(">" if min_open else ">=", minimum))
    if maximum is not None:
        parts.append("<= {:g}".format(maximum))
    return " and ".join(parts) or "a number"


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

    def _range(self, name: str, value: Any, minimum: Any, maximum: Any, min_open: bool = False) -> None:
        low_ok = minimum is None or (value > minimum if min_open else value >= minimum)
        if not (low_ok and (maximum is None or value <= maximum)):
            raise self.fail(name, "must be {}, not {!r}".format(_describe_range(minimum, maximum, min_open), value))

    def int(self, name: str, default: Any = _MISSING, minimum: Optional[int] = None,
            maximum: Optional[int] = INT_LIMIT) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "must be an integer, not {!r}".format(value))
        self._range(name, value, minimum, maximum)
        return value

    def num(self, name: str, default: Any = _MISSING, minimum: Optional[float] = -NUM_LIMIT,
            maximum: Optional[float] = NUM_LIMIT, min_open: bool = False) -> Any:
        """A finite number within the bounds (by default, at most NUM_LIMIT in magnitude): TOML reads nan, inf
        and 1e308, and each ended in a ValueError or OverflowError traceback once the physics used it."""
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(name, "must be a number, not {!r}".format(value))
        if not math.isfinite(value):
            raise self.fail(name, "must be a finite number ({}), not {!r}".format(
                _describe_range(minimum, maximum, min_open), value))
        self._range(name, value, minimum, maximum, min_open)
        return float(value)

    def str_list(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        return list(value)

    def int_list(self, name: str, default: Any = _MISSING, ascending: bool = False, minimum: Optional[int] = None,
                 maximum: Optional[int] = INT_LIMIT) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.fail(name, "must be a list of integers")
        if ascending and (not value or any(b <= a for a, b in zip(value, value[1:]))):
            raise self.fail(name, "must be a non-empty, strictly ascending list")
        for v in value:
            if not ((minimum is None or v >= minimum) and (maximum is None or v <= maximum)):
                raise self.fail(name, "must hold integers {}, not {!r}".format(_describe_range(minimum, maximum), v))
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
