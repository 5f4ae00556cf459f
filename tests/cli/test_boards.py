"""`edgeexit boards`: the table, --json, and the udev rule."""
from __future__ import annotations

from edgeexit.dvfs.udev import udev_rule
from tests.cli.helpers import edgeexit, json_out


def test_udev_rule_with_json_is_json():
    # Audit defect: --json --udev-rule printed the rule's text, which no JSON parser reads.
    assert json_out(edgeexit("boards", "--json", "--udev-rule")) == {"udev_rule": udev_rule()}


def test_udev_rule_alone_is_the_rule_text():
    p = edgeexit("boards", "--udev-rule")
    assert p.returncode == 0 and p.stdout == udev_rule(), p.stderr
