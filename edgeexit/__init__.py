"""edgeexit: predictive early exit and energy-optimal DVFS for multi-exit int8 TFLite networks.

The library is usable without the CLI::

    from edgeexit.bundle import load_bundle
    from edgeexit.bundle.data import quantize_inputs
    from edgeexit.policies import make_policy
    from edgeexit.runtime import Runtime

    bundle = load_bundle()                # the bundled demo model
    samples = bundle.split("evaluation")  # raw samples (x) and labels (y)
    xq = quantize_inputs(samples.x, bundle.manifest.input)  # block 0's int8 input, one per sample
    policy = make_policy("threshold", bundle)
    with Runtime(bundle) as rt:
        result = rt.infer(xq[0], policy)  # result.label, result.exit, result.macs, result.latency_ms
"""
from __future__ import annotations

__version__ = "0.1.0"
