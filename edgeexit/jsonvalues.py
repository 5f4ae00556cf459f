"""Checks of numbers read from edgeexit's JSON files (calibration.json, manifest.json, profiles) and passed to its
library (counts), shared so that every reader refuses the same things: a bool is not a number, and JSON's unbounded integers (10**400 parses)
are not finite numbers, where float() and math.isfinite() would raise OverflowError instead."""
from __future__ import annotations

import math
import numbers
from typing import Any


def is_number(v: Any) -> bool:
    """An int or float, not a bool (True is an int to Python, never a number in our files)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def holds_bool(v: Any) -> bool:
    """Whether ``v``, or any item of its nested lists, is a bool: numpy and float() read true as 1.0, so a
    hand-edited array of numbers would pass every later check."""
    if isinstance(v, list):
        return any(holds_bool(x) for x in v)
    return isinstance(v, bool)


def is_integer(v: Any) -> bool:
    """A Python or numpy integer, not a bool: a count a caller passes (a slice or a thread pool would read
    True as 1 and 2.5 as a TypeError deep inside)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_finite_number(v: Any) -> bool:
    """A number a float holds that is neither NaN nor infinite."""
    if not is_number(v):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int past float's range
        return False


def whole_number(v: Any) -> int:
    """``v`` as an int when it is one (7 or 7.0); ValueError for 7.5, "7", true, NaN or infinity, which int()
    would truncate, parse or turn into 1 without a word."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("{!r} is not a whole number".format(v))
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        raise ValueError("{!r} is not a whole number".format(v))
    return int(v)
