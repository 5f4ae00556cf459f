"""`edgeexit restore`: put a board's clocks back after a run was killed (SIGKILL, power loss)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from edgeexit.cli import options
from edgeexit.cli.render import echo_json


@click.command("restore")
@options.board
@options.sysfs_root
@options.no_simulate
@click.option("--force", is_flag=True,
              help="Also restore domains that someone else changed since the run died (by default those are left "
                   "alone and reported, so another tool's settings are not overwritten blindly).")
@options.json_output
def command(board: Optional[str], sysfs_root: Optional[Path], force: bool, as_json: bool) -> None:
    """Restore the CPU/GPU settings saved by an edgeexit run that did not finish.

    Runs normally restore on exit, on errors, Ctrl-C and SIGTERM; only SIGKILL or a crash leaves the
    saved-state file behind (a later run also restores it first).

    \b
    Examples:
      sudo edgeexit restore --board jetson-nano
      edgeexit restore --board jetson-nano --sysfs-root /tmp/nano
    """
    from edgeexit.dvfs.session import restore_board

    result = restore_board(board or "auto", sysfs_root, force=force)
    if as_json:
        echo_json(result, indent=None)
        return
    board = result["board"] + (" (SIMULATED)" if result["simulated"] else "")
    if result["restored"]:
        click.echo("restored {} at {} from {}".format(board, result["root"], result["state_file"]))
    else:
        click.echo("nothing to restore for {} at {} (no {})".format(board, result["root"], result["state_file"]))
