"""`edgeexit bench` on every bundle made by `python -m tools.compare_strategies --out-dir DIR`, as one
markdown table (simulated board; the per-exit accuracies are in docs/training.md).

    python -m tools.compare_strategies --out-dir out/strategies
    python benchmarks/strategy_bench.py out/strategies [--board jetson-nano]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def pct(v: "float | None") -> str:
    return "-" if v is None else "{:.1f}%".format(100 * v)


def describe(t: dict) -> str:
    s = t.get("strategy", "?")
    if s == "joint":
        return "joint ({} weights{})".format(t.get("weights"), ", distill {}".format(t["distill"]) if t.get("distill") else "")
    if s == "block-dependent":
        how = "groups {}".format(t["groups"]) if t.get("groups") else "overlap {}".format(t.get("overlap"))
        return "block-dependent ({}{})".format(how, ", final trains all" if t.get("include_final") else "")
    if s == "post-trained":
        return "post-trained (PTEENet, lambda {})".format(t.get("lambda_cost"))
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="--out-dir of tools.compare_strategies")
    ap.add_argument("--board", default="jetson-nano", help="the simulated board every bundle is benched on "
                                                           "(default: jetson-nano)")
    ap.add_argument("--out", type=Path, default=Path("out/strategy-bench"),
                    help="where each bundle's `edgeexit bench` output goes, one folder per bundle "
                         "(default: out/strategy-bench)")
    a = ap.parse_args()
    rows = ["| strategy (bundle) | full acc | threshold: acc / MACs saved | predictive: acc / MACs saved | predictive energy/period vs "
            "threshold@race / @governor | confidence-head: acc / MACs saved |", "|---|---|---|---|---|---|"]
    manifests = sorted(a.root.glob("*/*/manifest.json"))
    if not manifests:
        print("{} holds no bundles (<strategy>/<bundle>/manifest.json); pass the --out-dir of "
              "tools.compare_strategies (default build/strategies)".format(a.root), file=sys.stderr)
        return 2
    simulated = []
    for manifest in manifests:
        bundle = manifest.parent
        try:
            name = describe(json.loads(manifest.read_text()).get("training", {}))
        except (OSError, ValueError, AttributeError) as err:  # ValueError: not JSON; AttributeError: not an object
            print("{}: not a readable bundle manifest ({}); re-export that bundle or remove it from {}".format(
                manifest, err, a.root), file=sys.stderr)
            return 2
        out = a.out / "{}-{}".format(bundle.parent.name, bundle.name)
        bench = subprocess.run([sys.executable, "-m", "edgeexit", "bench", "--board", a.board, "--simulate", "--model",
                                str(bundle), "--no-sweep", "--no-sensitivity", "--out", str(out), "--json"],
                               stdout=subprocess.DEVNULL)
        if bench.returncode != 0:  # bench said why on stderr, in one line
            print("`edgeexit bench` failed on {} (exit {}); see its error above".format(bundle, bench.returncode),
                  file=sys.stderr)
            return bench.returncode
        r = json.loads((out / "results.json").read_text())
        simulated.append(bool(r.get("simulated")))
        arms, d = r["arms"], r["derived"].get("predictive@planned", {})  # left out where it could not be calibrated
        ch = arms.get("confidence-head@race")
        rows.append("| {} | {:.1%} | {:.1%} / {} | {:.1%} / {} | {} / {} | {} |".format(
            name, arms["full@max"]["accuracy"], arms["threshold@race"]["accuracy"], pct(arms["threshold@race"]["macs_reduction_vs_full"]),
            arms.get("predictive@planned", {}).get("accuracy", float("nan")),
            pct(arms.get("predictive@planned", {}).get("macs_reduction_vs_full")),
            pct(d.get("energy_period_saving_vs_threshold_at_race")), pct(d.get("energy_period_saving_vs_threshold_at_governor")),
            "{:.1%} / {}".format(ch["accuracy"], pct(ch["macs_reduction_vs_full"])) if ch else "-"))
    if all(simulated):  # bench ran with --simulate: a table copied on its own must still say so
        print("**SIMULATED board ({}):** latency and energy come from the board model (firmware_profiles/), not a "
              "measurement.\n".format(a.board))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
