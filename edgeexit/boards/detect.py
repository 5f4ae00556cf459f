"""``--board auto``: match the device-tree model string against every board config, and where it
matches none, the device tree's ``compatible`` entries (the module and carrier part numbers: JetPack 5
names an Orin Nano "NVIDIA Orin Nano Developer Kit", JetPack 6 "NVIDIA Jetson Orin Nano ...")."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from edgeexit.boards.config import BoardConfig, load_all_boards
from edgeexit.errors import BoardDetectError

DEVICE_TREE_DIRS = ("proc/device-tree", "sys/firmware/devicetree/base")
MODEL_PATHS = tuple(d + "/model" for d in DEVICE_TREE_DIRS)


def _device_tree_file(root: Path, name: str) -> Optional[bytes]:
    """The device-tree property ``name`` under ``root`` (the first of its two places), None if absent."""
    for d in DEVICE_TREE_DIRS:
        try:
            return (root / d / name).read_bytes()
        except OSError:
            continue
    return None


def read_model(root: Path) -> Optional[str]:
    """The NUL-terminated device-tree model string under ``root``, or None if neither file exists."""
    raw = _device_tree_file(root, "model")
    return None if raw is None else raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def read_compatible(root: Path) -> List[str]:
    """The device tree's NUL-separated ``compatible`` entries under ``root`` (none if the file is missing)."""
    raw = _device_tree_file(root, "compatible") or b""
    return [e.decode("utf-8", "replace").strip() for e in raw.split(b"\0") if e.strip()]


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
