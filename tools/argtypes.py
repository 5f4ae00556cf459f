"""argparse types that refuse nonsense numbers as argparse errors, before anything is imported or trained."""
from __future__ import annotations

import argparse
import math
from typing import Callable


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (hi None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {_span(lo, hi)}")
        return value

    return parse


def float_range(lo: float, hi: float | None = None) -> Callable[[str], float]:
    """A finite float in [lo, hi] (hi None: no upper bound); NaN and inf are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a finite number {_span(lo, hi)}")
        return value

    return parse


def _span(lo: float, hi: float | None) -> str:
    return f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
