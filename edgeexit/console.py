"""The console script (``edgeexit``, ``python -m edgeexit``), importing nothing before its guard: a Ctrl-C
while Python still imports the CLI (click and numpy take a second on a slow board) ends in one line too."""
import signal
import sys


def main() -> None:
    try:
        from edgeexit.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("edgeexit: interrupted\n")
        sys.exit(130)
    try:
        cli_main()
    finally:
        # Exiting: the board is back, or its state file kept for `edgeexit restore`. A Ctrl-C during the
        # interpreter's teardown could only print a traceback from a finalizer (LiteRT's, threading's),
        # and a SIGTERM there would turn the exit status already chosen into 0.
        from edgeexit.signals import HELD  # imported with the CLI already

        for s in HELD:
            signal.signal(s, signal.SIG_IGN)
