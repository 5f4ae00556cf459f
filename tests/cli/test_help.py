"""Every command and option explains itself in --help; `python -m edgeexit --help` works."""
from __future__ import annotations

import click
import pytest

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


def _option_help(cmd: str, option: str) -> str:
    """One option's help as `edgeexit CMD --help` shows it (before click wraps it at spaces and hyphens)."""
    command = cli.get_command(None, cmd)
    return next(p.help for p in command.params if isinstance(p, click.Option) and option in p.opts)


def test_bench_help_states_its_own_deadline_and_period_defaults():
    # Audit defect: bench shared run's help, which says the deadline defaults to the period "if given" and is
    # silent on the period; bench fills both in from the board model.
    d, p = _option_help("bench", "--deadline-ms"), _option_help("bench", "--period-ms")
    assert "twice the worst-case path" in d and "maximum CPU clock" in d, d
    assert "Default: the deadline" in p, p
    # run keeps its own: no deadline without a period, back-to-back inferences
    d, p = _option_help("run", "--deadline-ms"), _option_help("run", "--period-ms")
    assert "Default: the period, if given, else none" in d and "twice the worst-case path" not in d, d
    assert "Default: none" in p, p


def test_profile_paths_in_help_name_the_threads_suffix():
    # Audit defect: with --threads N > 1 the default file is <board>[-simulated]-<N>threads.json.
    for cmd, option in (("profile", "--out"), ("run", "--profile")):
        h = _option_help(cmd, option)
        assert "profiles/<board>[-simulated][-<N>threads].json" in h and "--threads N" in h, (cmd, h)


def test_bench_policies_help_states_the_default():
    h = _option_help("bench", "--policies")
    assert "Default: all of them" in h and "confidence-head only where the bundle has confidence heads" in h, h


@pytest.mark.parametrize("command", ["status", "restore"])
def test_simulate_on_status_and_restore_names_the_way_to_a_tree(command: str) -> None:
    """A review: `status --board jetson-nano --simulate` said only "No such option '--simulate'", though run,
    profile and bench take it."""
    from tests.cli.helpers import assert_one_line_error, edgeexit

    assert_one_line_error(edgeexit(command, "--board", "jetson-nano", "--simulate"),
                          "edgeexit {} works on a board's state".format(command),
                          "`edgeexit sim init --board NAME DIR` and pass --sysfs-root DIR")
