"""Every command and option explains itself in --help; `python -m edgeexit --help` works."""
from __future__ import annotations

import click

from edgeexit.cli import COMMANDS, cli
from tests.cli.helpers import edgeexit


def _walk(cmd, path, out):
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(None):
            _walk(cmd.get_command(None, name), path + [name], out)
    if not (cmd.help or "").strip():
        out.append((" ".join(path), "<command>"))
    for p in cmd.params:
        if isinstance(p, click.Option) and not (p.help or "").strip():
            out.append((" ".join(path), p.name))


def test_every_option_has_help():
    missing = []
    for name in COMMANDS:
        _walk(cli.get_command(None, name), [name], missing)
    assert missing == []


def test_module_help():
    p = edgeexit("--help")
    assert p.returncode == 0
    for name in COMMANDS:
        assert name in p.stdout


def test_a_bare_group_shows_its_help_not_an_error():
    # Audit defect: click >= 8.2 raises its no-arguments help as a usage error, printed as
    # "edgeexit: error: Usage: ..." with the whole help text.
    for args, usage in (((), "Usage: edgeexit [OPTIONS]"), (("sim",), "Usage: edgeexit sim [OPTIONS]")):
        p = edgeexit(*args)
        out = p.stdout + p.stderr
        assert out.startswith(usage) and "error" not in out.split("\n")[0] and p.returncode in (0, 2), out


def test_an_option_missing_its_value_points_at_its_commands_help():
    p = edgeexit("run", "--limit")
    assert p.returncode == 2 and p.stderr.strip().endswith("(see 'edgeexit run --help')"), p.stderr
    p = edgeexit("sim", "init", "--board")
    assert p.returncode == 2 and p.stderr.strip().endswith("(see 'edgeexit sim init --help')"), p.stderr
