"""benchmarks/strategy_bench.py's table says its board is simulated (audit defect: it printed bare figures)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "strategy_bench.py"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("strategy_bench", str(SCRIPT))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_table_says_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    mod = _script()
    bundle = tmp_path / "strategies" / "joint" / "b0"
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text(json.dumps({"training": {"strategy": "joint", "weights": "uniform"}}))
    arm = {"accuracy": 0.98, "macs_reduction_vs_full": 0.9}

    def fake_bench(cmd: List[str], **kwargs: Any) -> subprocess.CompletedProcess:  # what `bench --simulate` writes, in brief
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True)
        res = {"simulated": "--simulate" in cmd, "arms": {"full@max": arm, "threshold@race": arm}, "derived": {}}
        (out / "results.json").write_text(json.dumps(res))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(mod.subprocess, "run", fake_bench)
    monkeypatch.setattr(sys, "argv", ["strategy_bench.py", str(tmp_path / "strategies"), "--out", str(tmp_path / "o")])
    assert mod.main() == 0
    out = capsys.readouterr().out
    assert "SIMULATED board (jetson-nano)" in out and "| joint (uniform weights) |" in out


@pytest.mark.parametrize("manifest, args, needle", [
    ('{"training": {"strategy": "joint"}}', ["--board", "bogus"], "`edgeexit bench` failed on"),  # bench's own error
    ("{", [], "not a readable bundle manifest"),
])
def test_a_failed_bench_or_a_broken_manifest_is_one_line(tmp_path: Path, manifest: str, args: List[str], needle: str) -> None:
    """Both ended in a traceback (CalledProcessError, JSONDecodeError) after bench's own one-line error."""
    bundle = tmp_path / "strategies" / "joint" / "b0"
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text(manifest)
    p = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "strategies"), "--out", str(tmp_path / "o")] + args,
                       capture_output=True, text=True, cwd=str(SCRIPT.parents[1]))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert needle in p.stderr.strip().splitlines()[-1]
