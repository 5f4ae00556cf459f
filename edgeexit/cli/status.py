"""`edgeexit status`: governors, frequencies and temperatures of a board (real or simulated)."""
from __future__ import annotations

import errno as errno_mod
from pathlib import Path
from typing import Any, Dict, Optional

import click

from edgeexit.cli import options
from edgeexit.cli.render import echo_json


def power_readings(target: Any) -> Dict[str, Any]:
    """One reading of the board's power meter: {"rails_mw": {label: mW}, "total_mw", "total_basis", ...}.

    A board without a sensor (Pi 4) or whose sensor cannot be opened gives ``available: False`` and a
    ``reason`` naming the fix. A simulated tree is read through the same backends as a real board.
    """
    from edgeexit.errors import MeterError, SensorMissingError
    from edgeexit.profiling import board_meter

    try:
        meter = board_meter(target)
    except SensorMissingError as err:
        return {"available": False, "reason": "no power sensor: {}".format(err.message)}
    except MeterError as err:
        return {"available": False, "reason": "power meter failed: {}".format(err.message)}
    try:
        r = meter.read()
    finally:
        meter.close()
    return {"available": True, "meter": meter.name, "source": meter.source, "rails_mw": dict(r.rails_mw),
            "total_mw": r.total_mw, "total_basis": r.total_basis, "failed_rails": list(r.failed_rails)}


def collect(target: Any) -> Dict[str, Any]:
    from edgeexit.dvfs.controller import DvfsController
    from edgeexit.dvfs.state import unfinished_runs
    from edgeexit.guards.thermal import zone_paths

    ctl = DvfsController(target.board, target.sysfs)  # read-only use: no write is ever issued
    domains = [d.status() for d in ctl.domains]
    temps = []  # type: List[Dict[str, Any]]
    for z, path in zip(target.board.thermal_zones, zone_paths(target.board, target.sysfs)):
        zone = None if path is None else int(path.rsplit("thermal_zone", 1)[1])
        entry = {"zone": zone, "type": z.type, "temp_mc": None, "error": None}  # type: Dict[str, Any]
        if path is None:
            entry["error"] = "absent"
            temps.append(entry)
            continue
        try:
            entry["temp_mc"] = int(target.sysfs.read(path + "/temp"))
        except OSError as err:
            entry["error"] = errno_mod.errorcode.get(err.errno or 0, str(err))
        except ValueError:
            entry["error"] = "unparsable"
        temps.append(entry)
    info = {"board": target.board.name, "root": str(target.root), "simulated": target.simulated,
            "describe": target.describe(), "domains": domains, "thermal": temps, "power": power_readings(target)}
    info["unfinished_state_files"] = [str(f) for f in unfinished_runs(target.board.name, target.root)]
    reader = target.firmware_cpu_khz()
    if reader is not None:  # a Pi: cpufreq's cur is the request, the firmware says what runs
        info["firmware_cpu_khz"] = reader()
    return info


@click.command("status")
@options.board
@options.sysfs_root
@options.no_simulate
@options.json_output
def command(board: Optional[str], sysfs_root: Optional[Path], as_json: bool) -> None:
    """Show governors, current/min/max frequency per clock domain, temperatures and power rails.

    On a Raspberry Pi it also shows the CPU clock the firmware runs (`vcgencmd measure_clock arm`):
    cpufreq's cur there is the request, and the Pi 5 firmware never runs below 1.5 GHz.

    \b
    Examples:
      edgeexit status --board auto
      edgeexit status --board jetson-nano --sysfs-root /tmp/nano --json
    """
    from edgeexit.dvfs.session import resolve_target
    from edgeexit.dvfs.state import restore_command
    from edgeexit.paths import runtime_dir

    target = resolve_target(board or "auto", sysfs_root, False, offer_simulate=False)
    info = collect(target)
    if as_json:
        echo_json(info, indent=None)
        return
    click.echo(info["describe"])
    for d in info["domains"]:
        unit = "kHz" if d["kind"] == "cpu" else "Hz"
        u = "khz" if d["kind"] == "cpu" else "hz"
        shown = {k: "?" if d[k] is None else d[k] for k in ("governor", "cur_" + u, "min_" + u, "max_" + u)}
        click.echo("  {:<4} {:<8} governor {:<14} cur {:>11} {}  min {:>11}  max {:>11}{}".format(
            d["kind"], d["name"], shown["governor"], shown["cur_" + u], unit, shown["min_" + u], shown["max_" + u],
            "  (CPUs offline: edgeexit leaves it alone)" if d.get("online") is False else ""))
    if "firmware_cpu_khz" in info:
        fw = info["firmware_cpu_khz"]
        click.echo("  cpu  runs at {} (vcgencmd measure_clock arm; cpufreq's cur is the request)".format(
            "{} kHz".format(fw) if fw is not None else "an unknown clock: vcgencmd did not answer"))
    for t in info["thermal"]:
        if t["temp_mc"] is not None:
            value = "{:.1f} C".format(t["temp_mc"] / 1000.0)
        elif t["error"] == "absent":
            value = "absent (no thermal zone has this type)"
        else:
            value = "unreadable ({})".format(t["error"])
        click.echo("  temp {:<16} {}".format(t["type"], value))
    power = info["power"]
    if not power["available"]:
        click.echo("  power: {}".format(power["reason"]))
    else:
        for label, mw in sorted(power["rails_mw"].items()):
            click.echo("  rail {:<16} {:>9.1f} mW".format(label, mw))
        for label in power["failed_rails"]:
            click.echo("  rail {:<16} unreadable".format(label))
        total = "{:.1f} mW".format(power["total_mw"]) if power["total_mw"] is not None else "unknown (a rail failed)"
        click.echo("  power total          {} ({})".format(total, power["total_basis"]))
    own = runtime_dir()
    for f in info["unfinished_state_files"]:  # a SIGKILLed run: the clocks above may be its pins
        click.echo("  a run that did not finish left its saved clocks in {}; `{}` puts them back".format(
            f, restore_command(info["board"], Path(info["root"]), sudo=Path(f).parent != own)))
    if info["simulated"]:
        click.echo("SIMULATED board: these are not measurements of real hardware")
