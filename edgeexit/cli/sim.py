"""`edgeexit sim` (placeholder until its issue lands)."""
from __future__ import annotations

import click

from edgeexit.errors import EdgeExitError


@click.command("sim")
def command() -> None:
    """Not implemented yet."""
    raise EdgeExitError("'edgeexit sim' is not implemented in this version yet")
