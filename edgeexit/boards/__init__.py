"""Boards as data: board configs, firmware profiles, detection, and the Sysfs I/O interface."""
from __future__ import annotations

from edgeexit.boards.config import BoardConfig, PowerConfig, board_names, load_all_boards, load_board
from edgeexit.boards.detect import detect_board, read_model
from edgeexit.boards.profile import FirmwareProfile, load_profile
from edgeexit.boards.sysfs import HostSysfs, Sysfs

__all__ = [
    "BoardConfig", "PowerConfig", "FirmwareProfile", "Sysfs", "HostSysfs", "board_names", "load_all_boards",
    "load_board", "load_profile", "detect_board", "read_model",
]
