"""argparse types that refuse nonsense numbers as argparse errors, before anything is imported or trained."""
from __future__ import annotations

import argparse
import math
from typing import Callable, TypeVar

N = TypeVar("N", int, float)


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (hi None: no upper bound)."""
    return _ranged(int, "an integer", "", lo, hi)


def float_range(lo: float, hi: float | None = None) -> Callable[[str], float]:
    """A finite float in [lo, hi] (hi None: no upper bound); NaN and inf are refused."""
    return _ranged(float, "a number", "a finite number ", lo, hi)


def _ranged(kind: Callable[[str], N], what: str, give: str, lo: N, hi: N | None) -> Callable[[str], N]:
    span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text.strip()} is out of range: give {give}{span}")
        return value

    return parse
