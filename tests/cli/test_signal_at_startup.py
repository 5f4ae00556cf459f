"""A SIGTERM that lands while the CLI is still importing edgeexit.dvfs exits 143, without a traceback."""
from __future__ import annotations

import signal
import sys

import pytest

from edgeexit.cli import _raise_sigterm


def test_sigterm_while_dvfs_is_half_imported_exits_143(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the handler's import fail as a partly initialised module does (ImportError).
    monkeypatch.setitem(sys.modules, "edgeexit.dvfs.signals", None)
    with pytest.raises(SystemExit) as info:
        _raise_sigterm(signal.SIGTERM, None)
    assert info.value.code == 128 + signal.SIGTERM
