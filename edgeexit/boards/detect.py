"""``--board auto``: match the device-tree model string against every board config, and where it
matches none, the device tree's ``compatible`` entries (the module and carrier part numbers: JetPack 5
names an Orin Nano "NVIDIA Orin Nano Developer Kit", JetPack 6 "NVIDIA Jetson Orin Nano ...")."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from edgeexit.boards.config import BoardConfig, load_all_boards
from edgeexit.errors import BoardDetectError

MODEL_PATHS = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
COMPATIBLE_PATHS = ("proc/device-tree/compatible", "sys/firmware/devicetree/base/compatible")


def read_model(root: Path) -> Optional[str]:
    """The NUL-terminated device-tree model string under ``root``, or None if neither file exists."""
    for rel in MODEL_PATHS:
        try:
            raw = (root / rel).read_bytes()
        except OSError:
            continue
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return None


def read_compatible(root: Path) -> List[str]:
    """The device tree's NUL-separated ``compatible`` entries under ``root`` (none if the file is missing)."""
    for rel in COMPATIBLE_PATHS:
        try:
            raw = (root / rel).read_bytes()
        except OSError:
            continue
        return [e.decode("utf-8", "replace").strip() for e in raw.split(b"\0") if e.strip()]
    return []


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
    compatible = [] if hits else read_compatible(root)
    if not hits:  # the model string is the board's own name; part numbers only where it is unknown
        hits = [b for b in candidates if any(b.matches_model(c) for c in compatible)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise BoardDetectError(
            "cannot detect the board: model {!r}{} matches no board config; pass --board NAME (see `edgeexit boards`) "
            "or add board_configs/<name>.toml".format(
                model, " (compatible {})".format(", ".join(compatible)) if compatible else ""))
    raise BoardDetectError("model {!r} matches several boards ({}); pass --board NAME".format(
        model, ", ".join(b.name for b in hits)))
