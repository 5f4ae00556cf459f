"""`edgeexit run`: infer a bundle's samples block by block under an exit policy."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from edgeexit.bundle import load_bundle, read_samples
from edgeexit.cli import options
from edgeexit.cli.render import echo_json, key_values, progress
from edgeexit.policies import make_policy, policy_names
from edgeexit.records import RecordWriter
from edgeexit.runner import run_samples
from edgeexit.runtime import Runtime

EPILOG = """\b
Examples:
  edgeexit run --json                                  # demo model, classic early exit
  edgeexit run --policy full --limit 200 --output out/full.jsonl
  edgeexit run --model my_bundle --input samples.npz --policy threshold
"""


@click.command("run", epilog=EPILOG)
@options.model
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    default=None,
    help="An .npz with x (raw samples, the bundle's input shape and raw dtype) and optionally y (labels). "
    "Default: the bundle's own held-out evaluation split.",
)
@click.option(
    "--policy",
    type=click.Choice(policy_names()),
    default="threshold",
    show_default=True,
    help="Exit policy: 'full' runs every block and only the final exit; 'threshold' evaluates each exit head "
    "in order and exits when its max-softmax passes the threshold calibrated on held-out data.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Infer only the first N samples.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write one JSON record per inference to this JSONL file (flushed after each record).",
)
@options.interpreter
@options.threads
@options.json_output
def command(
    model_path: Optional[Path],
    input_path: Optional[Path],
    policy: str,
    limit: Optional[int],
    output: Optional[Path],
    interpreter: Optional[str],
    threads: int,
    as_json: bool,
) -> None:
    """Run a multi-exit bundle one sample at a time, one int8 segment per block, skipping the blocks
    and exit heads the policy does not need, and print a summary (accuracy, MACs, latency)."""
    bundle = load_bundle(model_path)
    samples = read_samples(input_path, bundle.manifest.input, bundle.manifest.num_classes) if input_path else bundle.split("evaluation")
    samples = samples.take(limit)
    pol = make_policy(policy, bundle)
    with Runtime(bundle, interpreter=interpreter, num_threads=threads) as rt, RecordWriter(output) as writer:
        with progress(len(samples), "inferring") as update:
            outcome = run_samples(rt, pol, samples, writer=writer, on_progress=update)
        summary = outcome.summary().to_dict()
    if as_json:
        echo_json(summary)
    else:
        click.echo(key_values({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}))
        click.echo("exit_histogram  " + " ".join(str(c) for c in summary["exit_histogram"]))
