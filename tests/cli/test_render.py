"""Human tables: numbers formatted alike whatever their Python type."""
from __future__ import annotations

from edgeexit.cli.render import key_values


def test_large_ints_and_floats_read_alike():
    out = key_values({"mean_macs": 1500636.4, "full_macs": 7666272, "n": 200, "simulated": True, "x": None,
                      "cpu_khz": 1479000})
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert rows == {"mean_macs": "1,500,636", "full_macs": "7,666,272", "n": "200", "simulated": "True", "x": "-",
                    "cpu_khz": "1479000"}  # a clock stays as --cpu-khz takes it
