"""Ctrl-C and SIGTERM held while the board is written (edgeexit/dvfs/signals.py)."""
from __future__ import annotations

import os
import signal

import pytest

from edgeexit.dvfs.signals import signals_held
from edgeexit.errors import DvfsError


def test_a_held_ctrl_c_is_delivered_when_the_block_ends() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("end of block")
    assert reached == ["end of block"]  # the write finished before the interrupt


def test_a_failed_block_keeps_its_error() -> None:
    # Audit defect: the held Ctrl-C's KeyboardInterrupt replaced a failed restore's DvfsError, and the CLI
    # then said "interrupted; the board state was restored".
    with pytest.raises(DvfsError, match="cannot write"):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            raise DvfsError("cannot write policy0; run `edgeexit restore`")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers put back
