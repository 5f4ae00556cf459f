"""DVFS: pin CPU/GPU operating points through sysfs, and always put them back.

    from edgeexit.dvfs import open_board
    with open_board("jetson-nano", simulate=True) as session:
        session.controller.set_cpu_khz(921600)
"""
from __future__ import annotations

from edgeexit.dvfs.controller import DvfsController
from edgeexit.dvfs.session import BoardSession, BoardTarget, open_board, resolve_target, restore_board

__all__ = ["open_board", "resolve_target", "restore_board", "BoardSession", "BoardTarget", "DvfsController"]
