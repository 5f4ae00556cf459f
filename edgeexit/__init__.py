"""edgeexit: predictive early exit and energy-optimal DVFS for multi-exit int8 TFLite networks.

The library is usable without the CLI::

    from edgeexit.bundle import load_bundle
    from edgeexit.runtime import Runtime

    bundle = load_bundle()                # the bundled demo model
    with Runtime(bundle) as rt:
        result = rt.infer(x, policy="threshold")
"""
from __future__ import annotations

__version__ = "0.1.0"
