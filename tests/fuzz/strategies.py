"""Hypothesis strategies shared by the fuzz suites: arbitrary JSON/TOML-like values and mutations."""
from __future__ import annotations

import copy
import os
from typing import Any, List

from hypothesis import settings
from hypothesis import strategies as st

# Examples per property: enough to find the crashes seen so far, small enough for CI (< 1 min total);
# EDGEEXIT_FUZZ_EXAMPLES=N for a longer fuzzing pass (then with fresh random seeds).
_N = int(os.environ.get("EDGEEXIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_N or 150, deadline=None, derandomize=not _N, database=None)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "..", "../../etc/passwd", "/etc/passwd", "a\x00b", "sys/../..", "NC", "userspace"]),
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
