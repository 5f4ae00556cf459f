"""``--board auto``: match the device-tree model string against every board config."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from edgeexit.boards.config import BoardConfig, load_all_boards
from edgeexit.errors import BoardDetectError

MODEL_PATHS = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")


def read_model(root: Path) -> Optional[str]:
    """The NUL-terminated device-tree model string under ``root``, or None if neither file exists."""
    for rel in MODEL_PATHS:
        try:
            raw = (root / rel).read_bytes()
        except OSError:
            continue
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return None


def detect_board(root: Path, boards: Optional[List[BoardConfig]] = None) -> BoardConfig:
    """The one board whose ``model_patterns`` match this root's model string."""
    model = read_model(root)
    if model is None:
        raise BoardDetectError(
            "cannot detect the board: neither {} exists under {}; on a board pass --board NAME (see `edgeexit "
            "boards`); elsewhere pass --sysfs-root DIR made by `edgeexit sim init` (run, profile and bench also take "
            "--board NAME --simulate)".format(" nor ".join(MODEL_PATHS), root))
    candidates = boards if boards is not None else load_all_boards()
    hits = [b for b in candidates if b.matches_model(model)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise BoardDetectError(
            "cannot detect the board: model {!r} matches no board config; pass --board NAME (see `edgeexit boards`) "
            "or add board_configs/<name>.toml".format(model))
    raise BoardDetectError("model {!r} matches several boards ({}); pass --board NAME".format(
        model, ", ".join(b.name for b in hits)))
