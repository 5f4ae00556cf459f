"""Ctrl-C and SIGTERM held while the board is being written: a second Ctrl-C during a restore stopped it
halfway, leaving clocks pinned and the simulated kernel's tree half-rendered."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held() -> Iterator[None]:
    """Record Ctrl-C/SIGTERM arriving inside the block and deliver them (once each, to the handlers in
    force before) when it ends. Off the main thread Python runs no signal handlers, so nothing to hold.

    A block that fails keeps its error: the KeyboardInterrupt a held Ctrl-C raises would replace it, and
    a failed restore would then be reported as "interrupted; the board state was restored"."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: List[int] = []
    old: Dict[int, Any] = {}
    for s in HELD:
        old[s] = signal.signal(s, lambda signum, frame: caught.append(signum))
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        for s, handler in old.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for s in dict.fromkeys(caught if not failed else []):
            signal.raise_signal(s)


def ignore_further_signals() -> None:
    """Called by the handler of the first Ctrl-C/SIGTERM, which unwinds to the restore: one more before
    the restore holds them would cut it short. The board session puts the handlers back when it closes."""
    if threading.current_thread() is threading.main_thread():
        for s in HELD:
            signal.signal(s, signal.SIG_IGN)


def sigterm_to_exit(signum: int, frame: Any) -> None:
    """A SIGTERM handler for where SIGTERM was SIG_DFL: SystemExit unwinds through every cleanup (and
    restore), which one more signal must not cut short."""
    ignore_further_signals()
    raise SystemExit(128 + signum)
