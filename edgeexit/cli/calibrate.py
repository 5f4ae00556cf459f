"""`edgeexit calibrate` (placeholder until its issue lands)."""
from __future__ import annotations

import click

from edgeexit.errors import EdgeExitError


@click.command("calibrate")
def command() -> None:
    """Not implemented yet."""
    raise EdgeExitError("'edgeexit calibrate' is not implemented in this version yet")
