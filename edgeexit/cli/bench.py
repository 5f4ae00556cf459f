"""`edgeexit bench` (placeholder until its issue lands)."""
from __future__ import annotations

import click

from edgeexit.errors import EdgeExitError


@click.command("bench")
def command() -> None:
    """Not implemented yet."""
    raise EdgeExitError("'edgeexit bench' is not implemented in this version yet")
