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
