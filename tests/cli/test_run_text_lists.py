"""The text summary counts what --json lists in full: it dropped every list but the exit histogram, so a run
whose thermal guard refused 96 raises said nothing of it at the end."""
from __future__ import annotations

import json

from tests.cli.helpers import edgeexit


def test_thermal_events_are_counted_in_the_text_summary() -> None:
    args = ("run", "--board", "jetson-nano", "--simulate", "--policy", "predictive", "--deadline-ms", "4",
            "--period-ms", "10", "--limit", "20", "--thermal-limit-mc", "20000")
    data = json.loads(edgeexit(*args, "--json").stdout)
    events = data["thermal_events"]
    assert events  # every zone is above 20 C: the guard refuses raises
    text = edgeexit(*args)
    assert text.returncode == 0, text.stderr
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("thermal_events"))
    assert line.split() == ["thermal_events", str(len(events))]
    assert "not_honoured_writes" not in text.stdout  # an empty list is not shown
