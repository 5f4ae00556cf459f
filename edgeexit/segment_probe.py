"""A first inference of every segment in a child process, before the runtime loads them.

The bundle's structure check (``bundle/flatbuffer.py``) refuses a segment cut short, pointing outside itself
or missing a tensor its kernel reads, but not every graph an interpreter's kernels crash on: a RESHAPE fed a
constant of another type segfaulted LiteRT 2.3 and aborted tflite-runtime 2.14. A crash in the runtime's own
process ends a command without a word, after it may have pinned the board's clocks. So the runtime first
runs each segment once, on zeros, in a forked child; a child killed by a signal names its segment in one line.
"""
from __future__ import annotations

import os
import select
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

from edgeexit.errors import InterpreterError
from edgeexit.interpreter import open_interpreter
from edgeexit.signals import TERMINATING

#: a child's first inferences take milliseconds; a child slower than this is left, and the runtime goes on
PROBE_TIMEOUT_S = 120.0
ALONE_ROUNDS = 5  # runs of each suspect alone, after the set crashed, before the crash is put down to the set
# the signals a crashing kernel dies of (a bad read, an abort, an arithmetic or illegal-instruction fault)
_CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT}


def probe_segments(segments: Sequence[Tuple[str, Path]], backend: Any, num_threads: int,
                   warn: Callable[[str], None], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`InterpreterError` naming the first of ``segments`` (label, path) whose load or first
    inference kills a child process. Errors the interpreter raises are left to the runtime's own load.

    Skipped where the process has other Python threads: a forked child holds copies of their locks, unowned,
    and can hang on one (the CLI opens its runtime before it starts any). Native threads (OpenBLAS's, an
    interpreter's pool) are not counted: their libraries reset their state in a child, and a child that hangs
    anyway is killed after ``timeout_s``. Skipped too where no child can be made or waited for (fork fails,
    or SIGCHLD is ignored): the probe is a second line of defence, never a reason to refuse a bundle.
    """
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return
    try:
        outcome = _run_child(segments, backend, num_threads, timeout_s)
    except OSError:  # EAGAIN/ENOMEM from fork, ECHILD where SIGCHLD is ignored
        return
    if outcome is None:
        warn("the crash check of the bundle's segments (each run once in a test process) took over {:.0f} s and "
             "was stopped; going on without it".format(timeout_s))
        return
    signum, label = outcome
    if signum is None:
        return
    # A segment can corrupt the heap and a later one die of it: the first that crashes on its own is named.
    labels = [s[0] for s in segments]
    suspects = segments[:labels.index(label) + 1] if label in labels else segments
    found = _first_to_crash_alone(suspects, backend, num_threads, timeout_s)
    if found is not None:
        (one, path), alone = found
        raise InterpreterError("bundle segment {} ({}) crashed the {} interpreter ({}) on a test inference in a child "
                               "process: its graph is broken; re-export the bundle with tools/export.py".format(
                                   one, path.name, backend.name, signal.Signals(alone).name))
    # None did alone (a corruption that crashes only some heap layouts): name where it died, and say so.
    raise InterpreterError("the bundle's segments crashed the {} interpreter ({}) on test inferences in a child process, "
                           "at segment {}, though none crashed alone: one of {} corrupts memory; re-export the "
                           "bundle with tools/export.py".format(backend.name, signal.Signals(signum).name, label or "?",
                                                               "{}..{}".format(suspects[0][0], suspects[-1][0])))


def _run_child(segments: Sequence[Tuple[str, Path]], backend: Any, num_threads: int,
               timeout_s: float) -> Optional[Tuple[Optional[int], str]]:
    """Run ``segments`` once each in a forked child: (the crash signal or None, the last segment it began), or
    None where it took over ``timeout_s`` (it is killed). OSError where no child could be made or reaped."""
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    try:
        with warnings.catch_warnings():  # Python 3.12+ warns of fork() beside native threads (see above)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # the child: never returns, never runs the parent's handlers, finally blocks or atexit
        status = 0
        try:
            os.close(read_fd)
            _child(segments, backend, num_threads, write_fd, parent)
        except BaseException:
            status = 3
        finally:
            os._exit(status)
    os.close(write_fd)
    reaped = False
    buf = b""
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                return None
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            buf += chunk
        _, status = os.waitpid(pid, 0)
        reaped = True
    finally:
        try:
            if not reaped:  # a timeout, or a Ctrl-C here: the child must not outlive the probe
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
        finally:
            os.close(read_fd)
    crashed = os.WIFSIGNALED(status) and os.WTERMSIG(status) in _CRASHES
    return (os.WTERMSIG(status) if crashed else None), _last(buf)


def _first_to_crash_alone(suspects: Sequence[Tuple[str, Path]], backend: Any, num_threads: int,
                          timeout_s: float) -> Optional[Tuple[Tuple[str, Path], int]]:
    """The first suspect that crashes a child on its own, and the signal, or None. A corruption crashes only some
    heap layouts, so a segment that did not crash alone once may the next time (CI saw exit4's broken tensor crash
    the set at exit5 and no segment alone): the suspects get ALONE_ROUNDS rounds."""
    for _ in range(ALONE_ROUNDS):
        for one in suspects:
            try:
                alone = _run_child([one], backend, num_threads, timeout_s)
            except OSError:  # no child to be had now: the crash is still reported, where it happened
                return None
            if alone is not None and alone[0] is not None:
                return one, alone[0]
    return None


def _last(buf: bytes) -> str:
    """The label of the last segment the child began (one line each, before it loads it)."""
    lines = [line for line in buf.decode("utf-8", "replace").split("\n") if line]
    return lines[-1] if lines else ""


def _child(segments: Sequence[Tuple[str, Path]], backend: Any, num_threads: int, write_fd: int, parent: int) -> None:
    import faulthandler

    import numpy as np

    faulthandler.disable()  # a crash here is the parent's to report, in one line
    _no_core_dump_and_die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's; it kills the child
    for sig in TERMINATING:  # never the CLI's handler, which restores the board
        signal.signal(sig, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the interpreter's own messages come again when the runtime loads the segment
    os.dup2(devnull, 2)
    for label, path in segments:
        os.write(write_fd, label.encode("utf-8") + b"\n")
        try:
            it = open_interpreter(backend, path, num_threads)
            for d in it.get_input_details():
                it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
            it.invoke()
            for d in it.get_output_details():
                it.get_tensor(d["index"])
        except Exception:  # refused, not crashed: the runtime's load says why
            continue


def _no_core_dump_and_die_with_parent(parent: int) -> None:
    """A crash the probe looks for must leave no core file (tens of MB in the user's directory) or crash
    report, and a child whose parent was killed (SIGKILL) must not run on."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no dump, not even through a core_pattern pipe (apport)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before PDEATHSIG was set
        os._exit(0)
