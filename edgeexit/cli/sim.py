"""`edgeexit sim`: create a simulated board tree, or mount it over FUSE."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from edgeexit.cli import options


@click.group("sim")
def command() -> None:
    """Simulated boards: a sysfs tree whose writes follow the board kernel's rules.

    \b
    Examples:
      edgeexit sim init --board jetson-nano /tmp/nano
      edgeexit status --board jetson-nano --sysfs-root /tmp/nano
      edgeexit sim mount --board jetson-nano /mnt/nano      # Ctrl-C unmounts
      edgeexit sim umount /mnt/nano
    """


def _board_name(board: Optional[str]) -> str:
    if not board:
        raise click.UsageError("--board NAME is required; `edgeexit boards` lists the names")
    if board == "auto":  # detection reads this machine's device tree; a simulated tree is of no machine
        raise click.UsageError("a simulated tree needs a board name, not 'auto': pass --board NAME; `edgeexit boards` lists "
                               "the names")
    return board


@command.command("init")
@options.board_name
@options.json_output
@click.argument("directory", type=options.PathType(file_okay=False, path_type=Path))
def init(board: Optional[str], as_json: bool, directory: Path) -> None:
    """Create a simulated sysfs tree for --board in DIRECTORY (empty or new)."""
    from edgeexit.boards.config import load_board
    from edgeexit.sim.kernel import MARKER, SimulatedKernel

    from edgeexit.errors import OutputError

    cfg = load_board(_board_name(board))
    try:
        k = SimulatedKernel.create(directory, cfg)
    except OutputError:
        raise
    except OSError as err:
        raise OutputError("cannot create the simulated tree in {} ({}); pick an empty or new directory you can "
                          "write".format(directory, err.strerror or err)) from None
    if as_json:
        click.echo(json.dumps({"board": cfg.name, "kernel_family": k.family, "root": str(directory),
                               "marker": str(directory / MARKER), "simulated": True}))
    else:
        click.echo("SIMULATED {} (kernel {} rules) created in {}".format(cfg.name, k.family, directory))


@command.command("mount")
@options.board_name
@click.option("--backing", type=options.PathType(file_okay=False, path_type=Path), default=None,
              help="Simulated tree to serve (from `edgeexit sim init`); default: a fresh tree in a temporary "
              "directory, deleted after unmounting.")
@click.option("--background", is_flag=True, help="Return once mounted instead of serving in the foreground.")
@click.argument("mountpoint", type=options.PathType(file_okay=False, path_type=Path))
def mount(board: Optional[str], backing: Optional[Path], background: bool, mountpoint: Path) -> None:
    """Serve the simulated board's kernel as a FUSE filesystem at MOUNTPOINT, so `cat` and
    `echo >` behave as on the board, errno included. Runs in the foreground: Ctrl-C unmounts.
    MOUNTPOINT must be an empty directory; a missing one is made, and removed once unmounted.
    Needs fuse3 (fusermount3) and mfusepy (pip install mfusepy, the [fuse] extra)."""
    from edgeexit.sim.fusefs import mount as do_mount

    do_mount(_board_name(board), mountpoint, backing=backing, foreground=not background,
             announce=lambda msg: click.echo(msg, err=True))


@command.command("umount")
@click.argument("mountpoint", type=options.PathType(file_okay=False, path_type=Path))
def umount(mountpoint: Path) -> None:
    """Unmount a tree mounted by `edgeexit sim mount`."""
    from edgeexit.sim.fusefs import unmount

    unmount(mountpoint)
    click.echo("unmounted {}".format(mountpoint), err=True)
