"""`edgeexit restore` (placeholder until its issue lands)."""
from __future__ import annotations

import click

from edgeexit.errors import EdgeExitError


@click.command("restore")
def command() -> None:
    """Not implemented yet."""
    raise EdgeExitError("'edgeexit restore' is not implemented in this version yet")
