"""Edits of a bundle's .tflite segments that keep the manifest's sha256 in step (a damaged segment re-hashed)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional, Tuple

from edgeexit.bundle.flatbuffer import _Reader, _Table

Where = Callable[[_Table], Tuple[Optional[int], int]]  # (position of a uint32, its new value), given the Model table


def set_uint(data: bytes, where: Where) -> bytes:
    """``data`` with the uint32 that ``where(model)`` locates (a _Table.field position) set to a value."""
    r = _Reader(data)
    at, value = where(r.table(r.uint(0, 4)))
    assert at is not None
    return data[:at] + (value & 0xFFFFFFFF).to_bytes(4, "little") + data[at + 4:]


def tensor_slot(op: Optional[int], field: int, slot: int, tensor: int) -> Where:
    """Set slot ``slot`` of operator ``op``'s inputs (field 1) or outputs (2), or (op None) of the subgraph's own
    inputs/outputs, to ``tensor`` (-1: absent)."""
    def where(model: _Table) -> Tuple[Optional[int], int]:
        sub = model.tables(2)[0]
        table = sub if op is None else sub.tables(3)[op]
        return table.ref(field) + 4 + 4 * slot, tensor
    return where


def edit_segment(root: Path, segment: str, where: Where) -> None:
    """Apply ``where`` to ``root``'s ``segment`` (``block3``, ``exit4``) and write its new sha256 to the manifest."""
    p = root / "{}.tflite".format(segment)
    p.write_bytes(set_uint(p.read_bytes(), where))
    kind, index = ("blocks", int(segment[5:])) if segment.startswith("block") else ("exits", int(segment[4:]))
    m = json.loads((root / "manifest.json").read_text())
    m[kind][index]["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(m))
