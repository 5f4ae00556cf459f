"""Tolerant reads of numeric sysfs files: a bad read becomes ``None``, never an exception."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional


def read_text(path: Path) -> Optional[str]:
    """The stripped content of ``path``, or ``None`` if it cannot be read."""
    # os.read, not Path.read_text: a sysfs read failing with EAGAIN must raise (and become None
    # here) where a buffered reader could hand back a partial or empty result.
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    try:
        data = os.read(fd, 65536)
        return data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def read_number(path: Path) -> Optional[float]:
    """A finite number from ``path``; ``None`` on EAGAIN/EIO/missing file, empty text or ``nan``.

    INA3221 reads go over I2C and can fail transiently (EAGAIN, EIO); sysfs may also hand back an
    empty string mid-update. Those samples are dropped by the caller rather than read as 0.
    """
    text = read_text(path)
    if not text:
        return None
    try:
        value = float(text.split()[0])
    except ValueError:
        return None
    return value if math.isfinite(value) else None
