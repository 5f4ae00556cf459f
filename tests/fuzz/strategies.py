"""Hypothesis strategies shared by the fuzz suites: arbitrary JSON/TOML-like values and mutations."""
from __future__ import annotations

import copy
import os
from typing import Any, List, Tuple

from hypothesis import settings
from hypothesis import strategies as st

# Examples per property: enough to find the crashes seen so far, small enough for CI (< 1 min total);
# EDGEEXIT_FUZZ_EXAMPLES=N for a longer fuzzing pass (then with fresh random seeds).
_N = int(os.environ.get("EDGEEXIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_N or 150, deadline=None, derandomize=not _N, database=None)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.just(10 ** 400),  # JSON allows it; float() and math.isfinite() raise OverflowError on it
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "..", "../../etc/passwd", "/etc/passwd", "a\x00b", "sys/../..", "NC", "userspace",
                     "foo", "float32", "object", "block0.tflite\x00x"]),
)
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def paths_of(doc: Any, prefix: tuple = ()) -> List[tuple]:
    """Every key path into nested dicts/lists."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(paths_of(v, prefix + (k,)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(paths_of(v, prefix + (i,)))
    return out


@st.composite
def mutated(draw: Any, doc: Any) -> Any:
    """``doc`` with one to three places replaced by an arbitrary value or deleted."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in paths_of(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return doc


def _nearby(value: Any) -> Any:
    """Plausible hand edits of one value: what a typo or a careless edit of a valid file gives."""
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, float):
        return st.sampled_from([value * 3, value * (1 + 1e-3), -value, 0.0, -0.5, float("nan"), float("inf"), 10 ** 400])
    if isinstance(value, int):
        return st.sampled_from([value + 50, value - 1, -value, 0, 2 ** 40, 10 ** 400])
    if isinstance(value, str):
        return st.sampled_from([value + "\x00x", value + "x" * 300, "foo", "", "float32", "object", "int8", "uint8", "../" + value])
    return json_values


@st.composite
def perturbed(draw: Any, doc: Any, focus: Tuple[str, ...] = ()) -> Any:
    """``doc`` with one to three leaves edited to a nearby value (:func:`_nearby`): unlike :func:`mutated`,
    the result usually still parses, so the checks behind the parser (files, .tflite tensors) are reached.
    Half the edits go to leaves under a key in ``focus``, so rare keys among many are still edited."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        leaves = [p for p in paths_of(doc) if p and not isinstance(_at(doc, p), (dict, list))]
        focused = [p for p in leaves if any(k in focus for k in p if isinstance(k, str))]
        if not leaves:
            break
        path = draw(st.sampled_from(focused if focused and draw(st.booleans()) else leaves))
        parent = _at(doc, path[:-1])
        parent[path[-1]] = draw(_nearby(parent[path[-1]]))
    return doc


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc
