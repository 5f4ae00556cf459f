"""``vcgencmd`` on a simulated Raspberry Pi: the text its simulated kernel renders under
``.edgeexit-sim/vcgencmd/`` (one file per command, named by its arguments joined with ``_``),
in the real command's format, so the real parsers read it."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from edgeexit.boards.vcgencmd import Runner
from edgeexit.sim.kernel import VCGENCMD_DIR


def simulated_vcgencmd(root: Path) -> Runner:
    """A runner for ``argv`` = ``["vcgencmd", ...]`` answering from the simulated tree at ``root``.
    A command the simulated board does not know gets the firmware's own refusal, as on a real Pi."""
    base = Path(root) / VCGENCMD_DIR

    def run(argv: Sequence[str]) -> str:
        try:
            return (base / "_".join(argv[1:])).read_text()
        except (FileNotFoundError, IsADirectoryError):
            return 'error=1 error_msg="Command not registered"\n'

    return run
