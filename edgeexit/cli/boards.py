"""`edgeexit boards`: list the shipped board configs (and print the udev rule)."""
from __future__ import annotations

import click

from edgeexit.boards.config import load_all_boards
from edgeexit.boards.profile import load_profile
from edgeexit.cli import options
from edgeexit.cli.render import echo_json


@click.command("boards")
@options.json_output
@click.option("--udev-rule", is_flag=True,
              help="Print a udev rule that lets group 'edgeexit' set clocks without root, then exit (with --json: "
              "{\"udev_rule\": TEXT}).")
def command(as_json: bool, udev_rule: bool) -> None:
    """List the boards edgeexit knows (board_configs/*.toml), with kernel family, CPU policies,
    GPU devfreq node and power sensor.

    \b
    Examples:
      edgeexit boards
      edgeexit boards --json
      edgeexit boards --udev-rule | sudo tee /etc/udev/rules.d/99-edgeexit.rules
    """
    if udev_rule:
        from edgeexit.dvfs.udev import udev_rule as make_rule

        if as_json:  # --json promises JSON on stdout; a script gets the rule as one string it can write out
            echo_json({"udev_rule": make_rule()})
        else:
            click.echo(make_rule(), nl=False)
        return
    boards = load_all_boards()
    rows = []
    for b in boards:
        s = b.summary()
        p = load_profile(b)
        s["cpu_khz"] = {pol: [t.freqs[0], t.freqs[-1]] for pol, t in p.cpu.tables.items()}
        s["gpu_hz"] = [p.gpu.table.freqs[0], p.gpu.table.freqs[-1]] if p.gpu else None
        s["firmware_profile"] = str(p.source)
        rows.append(s)
    if as_json:
        echo_json({"boards": rows})
        return
    click.echo("{:<18} {:<7} {:<8} {:<26} {:<24} {}".format("BOARD", "KERNEL", "JETPACK", "CPU kHz (policies)",
                                                             "GPU Hz", "POWER SENSOR"))
    for s in rows:
        lo = min(v[0] for v in s["cpu_khz"].values())
        hi = max(v[1] for v in s["cpu_khz"].values())
        cpu = "{}-{} ({})".format(lo, hi, len(s["cpu_policies"]))
        gpu = "{}-{}".format(*s["gpu_hz"]) if s["gpu_hz"] else "-"
        click.echo("{:<18} {:<7} {:<8} {:<26} {:<24} {}".format(
            s["name"], s["kernel_family"], s["jetpack"] or "-", cpu, gpu, s["power_sensor"]))
