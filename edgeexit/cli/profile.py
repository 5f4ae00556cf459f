"""`edgeexit profile` (placeholder until its issue lands)."""
from __future__ import annotations

import click

from edgeexit.errors import EdgeExitError


@click.command("profile")
def command() -> None:
    """Not implemented yet."""
    raise EdgeExitError("'edgeexit profile' is not implemented in this version yet")
