"""`edgeexit run` (placeholder until its issue lands)."""
from __future__ import annotations

import click

from edgeexit.errors import EdgeExitError


@click.command("run")
def command() -> None:
    """Not implemented yet."""
    raise EdgeExitError("'edgeexit run' is not implemented in this version yet")
