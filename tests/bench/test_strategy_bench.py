"""benchmarks/strategy_bench.py's table says its board is simulated (audit defect: it printed bare figures)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, List

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "strategy_bench.py"


def test_table_says_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("strategy_bench", str(SCRIPT))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    bundle = tmp_path / "strategies" / "joint" / "b0"
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text(json.dumps({"training": {"strategy": "joint", "weights": "uniform"}}))
    arm = {"accuracy": 0.98, "macs_reduction_vs_full": 0.9}

    def fake_bench(cmd: List[str], **kwargs: Any) -> None:  # what `edgeexit bench --simulate` writes, in brief
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True)
        res = {"simulated": "--simulate" in cmd, "arms": {"full@max": arm, "threshold@race": arm}, "derived": {}}
        (out / "results.json").write_text(json.dumps(res))

    monkeypatch.setattr(mod.subprocess, "run", fake_bench)
    monkeypatch.setattr(sys, "argv", ["strategy_bench.py", str(tmp_path / "strategies"), "--out", str(tmp_path / "o")])
    assert mod.main() == 0
    out = capsys.readouterr().out
    assert "SIMULATED board (jetson-nano)" in out and "| joint (uniform weights) |" in out
