"""`edgeexit boards` (placeholder until its issue lands)."""
from __future__ import annotations

import click

from edgeexit.errors import EdgeExitError


@click.command("boards")
def command() -> None:
    """Not implemented yet."""
    raise EdgeExitError("'edgeexit boards' is not implemented in this version yet")
