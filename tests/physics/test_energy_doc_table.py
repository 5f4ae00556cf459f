"""docs/energy.md's threads table is the board model's, digit for digit (it went stale once: a profile
change moved the 1-thread column by up to 0.005 mJ and nobody re-ran it)."""
from __future__ import annotations

import re
from pathlib import Path

from edgeexit.boards import load_board, load_profile
from edgeexit.bundle import load_bundle
from edgeexit.sim.physics import BoardPhysics

DOC = Path(__file__).resolve().parents[2] / "docs" / "energy.md"
PERIOD_S = 0.020


def test_the_threads_table_is_the_model() -> None:
    bundle, board = load_bundle(), load_board("jetson-nano")
    profile = load_profile(board)
    full = [s.macs for s in bundle.blocks] + [bundle.exits[-1].macs]  # every block and the final exit
    four, one = BoardPhysics(profile, threads=4), BoardPhysics(profile, threads=1)
    table = sorted(profile.cpu_table(board.cpu_policies[0].name).freqs)
    rows = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.*) \|$", DOC.read_text(), re.M)}
    assert sorted(rows) == table
    for f in table:
        t4 = sum(four.segment_s(m, f) for m in full)
        e4 = four.power(f, True).total_mw * t4
        e1 = one.power(f, True).total_mw * sum(one.segment_s(m, f) for m in full)
        period = e4 + four.idle_mw(table[0]) * (PERIOD_S - t4)
        want = "{:.3f} | {:.3f} | {:.2f} | {:.3f}".format(t4 * 1e3, e4, period, e1)
        assert rows[f] == want, (f, rows[f], want)
