"""`edgeexit status`: governors, frequencies and temperatures of a board (real or simulated)."""
from __future__ import annotations

import errno as errno_mod
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import click

from edgeexit.cli import options


def power_readings(target: Any) -> Optional[Dict[str, Any]]:
    """Hook for the power meters: return {"rails": {label: power_mw}, ...} once they exist.

    Returns None for now; `status` prints "power: not available yet" in that case.
    """
    return None


def collect(target: Any) -> Dict[str, Any]:
    from edgeexit.dvfs.controller import DvfsController

    ctl = DvfsController(target.board, target.sysfs)  # read-only use: no write is ever issued
    domains = [d.status() for d in ctl.domains]
    temps = []  # type: List[Dict[str, Any]]
    for z in target.board.thermal_zones:
        entry = {"zone": z.index, "type": z.type, "temp_mc": None, "error": None}  # type: Dict[str, Any]
        try:
            entry["temp_mc"] = int(target.sysfs.read(z.relpath + "/temp"))
        except OSError as err:
            entry["error"] = errno_mod.errorcode.get(err.errno or 0, str(err))
        except ValueError:
            entry["error"] = "unparsable"
        temps.append(entry)
    return {"board": target.board.name, "root": str(target.root), "simulated": target.simulated,
            "describe": target.describe(), "domains": domains, "thermal": temps, "power": power_readings(target)}


@click.command("status")
@options.board
@options.sysfs_root
@options.json_output
def command(board: Optional[str], sysfs_root: Optional[Path], as_json: bool) -> None:
    """Show governors, current/min/max frequency per clock domain, and temperatures.

    \b
    Examples:
      edgeexit status --board auto
      edgeexit status --board jetson-nano --sysfs-root /tmp/nano --json
    """
    from edgeexit.dvfs.session import resolve_target

    target = resolve_target(board or "auto", sysfs_root, False)
    info = collect(target)
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    click.echo(info["describe"])
    for d in info["domains"]:
        unit = "kHz" if d["kind"] == "cpu" else "Hz"
        u = "khz" if d["kind"] == "cpu" else "hz"
        click.echo("  {:<4} {:<8} governor {:<14} cur {:>11} {}  min {:>11}  max {:>11}".format(
            d["kind"], d["name"], d["governor"], d["cur_" + u], unit, d["min_" + u], d["max_" + u]))
    for t in info["thermal"]:
        value = "{:.1f} C".format(t["temp_mc"] / 1000.0) if t["temp_mc"] is not None else "unreadable ({})".format(t["error"])
        click.echo("  temp {:<16} {}".format(t["type"], value))
    if info["power"] is None:
        click.echo("  power: not available yet")
    if info["simulated"]:
        click.echo("SIMULATED board: these are not measurements of real hardware")
