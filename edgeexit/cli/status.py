"""`edgeexit status` (placeholder until its issue lands)."""
from __future__ import annotations

import click

from edgeexit.errors import EdgeExitError


@click.command("status")
def command() -> None:
    """Not implemented yet."""
    raise EdgeExitError("'edgeexit status' is not implemented in this version yet")
