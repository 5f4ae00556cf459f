"""Read a TOML file with tomllib (3.11+) or tomli (3.8-3.10), turning syntax errors into one line."""
from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from edgeexit.errors import BoardConfigError

if sys.version_info >= (3, 11):
    import tomllib as _toml  # novm
else:  # pragma: no cover - exercised on the 3.8 boards only
    import tomli as _toml


def load_toml(path: Path) -> Dict[str, Any]:
    """Parse ``path``; a syntax error becomes a :class:`BoardConfigError` naming the file."""
    try:
        with open(path, "rb") as fh:
            return _toml.load(fh)
    except OSError as err:
        raise BoardConfigError("cannot read {}: {}".format(path, err.strerror or err)) from None
    except _toml.TOMLDecodeError as err:
        raise BoardConfigError("{}: invalid TOML: {}; fix the file".format(path, err)) from None
    except UnicodeDecodeError as err:  # TOML must be UTF-8; tomllib lets the decode error through
        raise BoardConfigError("{}: not UTF-8 text ({}); save the file as UTF-8".format(path, err.reason)) from None


def refuse_non_file(path: Path, kind: str, board: str) -> None:
    """Raise if ``path`` (board ``board``'s ``kind``: "config" or "profile") is there but no regular file."""
    what = not_a_file(path)
    if what is not None:
        label = "board config" if kind == "config" else "firmware profile"
        raise BoardConfigError("{} {} is {}, not a TOML file; put board {}'s {} there, or remove it".format(
            label, path, what, board, kind))


def not_a_file(path: Path) -> Optional[str]:
    """What ``path`` is when it is there but no regular file one can read ("a directory", "a FIFO", "a
    symbolic link that leads nowhere", ...), or None: a regular file, or nothing at all. A config of the right
    name that is something else must be named as such, not as missing."""
    try:
        mode = os.stat(str(path)).st_mode
    except OSError as err:
        if not os.path.lexists(str(path)):
            return None
        return "a symbolic link loop" if err.errno == errno.ELOOP else "a symbolic link that leads nowhere"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "no regular file"
