"""The ``edgeexit`` command: a thin click layer over the library.

Each sub-command lives in its own module (``edgeexit/cli/<name>.py``) exposing ``command``; the
group imports them lazily so ``edgeexit --help`` stays fast on a board.
"""
from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
from typing import Any, List, Optional

import click

from edgeexit import __version__
from edgeexit.errors import EdgeExitError
from edgeexit.signals import caught_signal, forget_caught, handle_terminating, received_signal, signal_word, sigterm_to_exit

# name on the command line -> module under edgeexit.cli
COMMANDS = {
    "run": "run",
    "profile": "profile",
    "calibrate": "calibrate",
    "bench": "bench",
    "boards": "boards",
    "status": "status",
    "restore": "restore",
    "sim": "sim",
}


class CliError(click.ClickException):
    """An :class:`EdgeExitError` shown as one line, keeping its exit code."""

    def __init__(self, err: EdgeExitError) -> None:
        super().__init__(err.message)
        self.exit_code = err.exit_code

    def show(self, file: Any = None) -> None:
        click.echo("edgeexit: error: {}".format(self.message), err=True)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        modname = COMMANDS.get(cmd_name)
        if modname is None:
            return None
        module = importlib.import_module("edgeexit.cli." + modname)
        return module.command  # type: ignore[no-any-return]

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeExitError as err:
            raise CliError(err) from None
        except KeyboardInterrupt as err:
            # past click, which prints a blank line before its Abort; a signal's has no message, one raised
            # with a message says what the interrupt left undone
            raise _Interrupted(str(err)) from None
        except BrokenPipeError:
            raise _PipeClosed() from None  # past click, which turns EPIPE into a silent exit 1


class _Interrupted(BaseException):
    """Ctrl-C inside a command, on its way to main's one line (exit 130)."""


class _PipeClosed(BaseException):
    """The reader of stdout went away (`edgeexit run | head`), on its way to main's exit 141."""


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeexit")
def cli() -> None:
    """Run multi-exit int8 TFLite networks block by block, exit early, and pick the
    energy-optimal CPU/GPU operating point on Jetson and Raspberry Pi boards.

    Simulated boards (--simulate, or a tree from `edgeexit sim init`) are never chosen
    silently, and every output of a simulated run says so.
    """


def _quiet_swallowed_signal(unraisable: Any) -> None:
    """A signal's exception raised inside a finalizer or weakref callback is lost there, and Python would print
    its traceback as "Exception ignored in ..."; it is recorded (edgeexit.signals) and ends the command as
    any signal does, in one line. Everything else is printed as Python does."""
    if isinstance(unraisable.exc_value, (KeyboardInterrupt, SystemExit)) and received_signal() is not None:
        return
    sys.__unraisablehook__(unraisable)


def _silence_stdout() -> None:
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's capture): nothing to flush there
        pass


def _command_path(argv: List[str]) -> str:
    """`edgeexit run` for an error click raised before it had a context (an option missing its value)."""
    path: List[str] = ["edgeexit"]
    group: Optional[click.Command] = cli
    with click.Context(cli) as ctx:
        for word in argv:
            group = group.get_command(ctx, word) if isinstance(group, click.Group) else None
            if group is None:
                break
            path.append(word)
    return " ".join(path)


def os_error_line(err: OSError) -> str:
    """An I/O error no check of ours caught, as one line that still says what to check: the path, and for the
    common errnos the likely fix (a sysfs node that is a directory, a missing file, permissions)."""
    what = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
    path = err.filename
    if path is None:
        return "{}; check the files and devices this command uses (--model, --input, --out, the board's sysfs)".format(what)
    code = err.errno
    if code in (errno.EISDIR, errno.ENOTDIR):
        fix = "check that it is a regular file (the board's sysfs node, not a directory) and that the board config's " \
              "paths are right"
    elif code == errno.ENOENT:
        fix = "check that it exists (on a board: that the board config matches its kernel)"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "check its permissions (writing a board's sysfs needs root: sudo)"
    elif code == errno.ENOSPC:
        fix = "free space on the file system that holds it"
    else:
        fix = "check that it is the file or sysfs node this command should use, and that it works"
    if err.filename2 is not None:
        path = "{} -> {}".format(path, err.filename2)
    return "{} ({}); {}".format(what, path, fix)


def _last_word(signum: int) -> None:
    try:
        click.echo("edgeexit: {}".format(signal_word(signum)), err=True)
    except OSError:  # stderr gone with the terminal: the exit status still says it
        pass


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point: one line per error, no tracebacks, clean Ctrl-C/SIGTERM."""
    signal.signal(signal.SIGTERM, sigterm_to_exit)  # unwinds through every restore
    handle_terminating()  # a hang-up and Ctrl-\ too, unless ignored (nohup)
    sys.unraisablehook = _quiet_swallowed_signal
    forget_caught()  # one command's signal is not the next one's (main called again in one process)
    try:
        rc = cli.main(args=argv, prog_name="edgeexit", standalone_mode=False)
    except CliError as err:
        err.show()
        sys.exit(err.exit_code)
    except (click.exceptions.Abort, _Interrupted) as err:
        click.echo("edgeexit: {}".format(str(err) or "interrupted"), err=True)
        sys.exit(130)
    except click.UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `edgeexit` or `edgeexit sim` (click >= 8.2): help
            click.echo(err.format_message(), err=True)
            sys.exit(err.exit_code)
        # One line, naming the fix, instead of click's usage block.
        cmd = err.ctx.command_path if err.ctx is not None else _command_path(sys.argv[1:] if argv is None else argv)
        click.echo("edgeexit: error: {} (see '{} --help')".format(err.format_message(), cmd), err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        click.echo("edgeexit: error: {}".format(err.format_message()), err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("edgeexit: interrupted; the board state was restored", err=True)
        sys.exit(130)
    except (BrokenPipeError, _PipeClosed):
        # As a shell reports a pipeline member killed by SIGPIPE. Python's own flush of stdout at exit
        # would fail again and print "Exception ignored": point stdout at /dev/null first.
        _silence_stdout()
        sys.exit(141)
    except OSError as err:
        # Unexpected I/O failure outside our own checks: still one line, never a traceback.
        click.echo("edgeexit: error: {}".format(os_error_line(err)), err=True)
        sys.exit(1)
    except SystemExit as err:
        signum = received_signal()
        if signum is not None and signum != signal.SIGINT and err.code == 128 + signum:
            _last_word(signum)
        raise
    signum = caught_signal()
    if signum is not None:  # its exception was swallowed by a finalizer ("Exception ignored"): still a signal's end
        _last_word(signum)
        sys.exit(128 + signum)
    sys.exit(rc if isinstance(rc, int) else 0)

