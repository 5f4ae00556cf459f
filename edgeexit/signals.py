"""Ctrl-C and SIGTERM: held while the board is being written (a second Ctrl-C during a restore stopped it
halfway, leaving clocks pinned and the simulated kernel's tree half-rendered), and recorded when turned
into an exception, so one lost in a finalizer still ends the command."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

# Signals that end a command as SIGTERM does, unwinding through the restore: a hang-up (an SSH session that
# dropped: the likeliest end of a run on a board) and Ctrl-\ killed the process outright, leaving clocks pinned.
TERMINATING = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))
HELD = (signal.SIGINT,) + TERMINATING

# Signals a handler turned into an exception. A handler runs wherever the main thread is, a finalizer or
# weakref callback included, where Python prints "Exception ignored" and goes on: the work would then run
# to its end deaf to signals (the handler ignored further ones). Kept, it is raised again (see below).
_caught: List[int] = []
_received: List[int] = []  # every one noted since the command began, answered or not (its last line says so)


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


def note_caught(signum: int) -> None:
    """Record that ``signum`` is being turned into an exception (call before raising it)."""
    for record in (_caught, _received):
        if signum not in record:
            record.append(signum)


def caught_signal() -> Optional[int]:
    """The first Ctrl-C/SIGTERM a handler turned into an exception not yet seen unwinding, or None."""
    return _caught[0] if _caught else None


def received_signal() -> Optional[int]:
    """The first Ctrl-C/SIGTERM a handler turned into an exception since :func:`forget_caught`, or None."""
    return _received[0] if _received else None


def signal_answered() -> None:
    """Its exception was seen unwinding, so it was not swallowed: a library caller (a notebook) that catches
    the Ctrl-C and runs again must not be stopped by it a second time."""
    del _caught[:]


def forget_caught() -> None:
    """Start afresh: a new command in this process."""
    del _caught[:]
    del _received[:]


def reraise_caught() -> None:
    """Raise again a Ctrl-C/SIGTERM whose exception was swallowed (see ``_caught``); long loops call this
    between steps, so the work stops and the board is restored as for any signal."""
    if _caught and threading.current_thread() is threading.main_thread():
        if _caught[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + _caught[0])


def ignore_further_signals() -> None:
    """Called by the handler of the first Ctrl-C/SIGTERM, which unwinds to the restore: one more before
    the restore holds them would cut it short. The board session puts the handlers back when it closes."""
    if threading.current_thread() is threading.main_thread():
        for s in HELD:
            signal.signal(s, signal.SIG_IGN)


def sigterm_to_exit(signum: int, frame: Any) -> None:
    """A SIGTERM (SIGHUP, SIGQUIT) handler for where it was SIG_DFL: SystemExit unwinds through every cleanup
    (and restore), which one more signal must not cut short. After a hang-up the terminal is gone and a write
    to it fails (EIO), which would end the restore's report in an error: stdout and stderr on a terminal are
    pointed at /dev/null first."""
    note_caught(signum)
    ignore_further_signals()
    if signum == getattr(signal, "SIGHUP", None):
        _detach_terminal()
    raise SystemExit(128 + signum)


def _detach_terminal() -> None:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        for fd in (1, 2):
            try:
                if os.isatty(fd):
                    os.dup2(null, fd)
            except OSError:
                pass
    finally:
        os.close(null)


def handle_terminating(handler: Any = None) -> Dict[int, Any]:
    """Install ``handler`` (default :func:`sigterm_to_exit`) for every TERMINATING signal left at SIG_DFL; one
    ignored stays ignored (``nohup`` ignores SIGHUP). Returns the handlers it replaced."""
    old: Dict[int, Any] = {}
    for s in TERMINATING:
        if signal.getsignal(s) == signal.SIG_DFL:
            old[s] = signal.signal(s, handler or sigterm_to_exit)
    return old


def signal_word(signum: int) -> str:
    """How a command's last line names the signal that ended it."""
    if signum == signal.SIGINT:
        return "interrupted"
    if signum == signal.SIGTERM:
        return "terminated"
    return "terminated by {}".format(signal.Signals(signum).name)
