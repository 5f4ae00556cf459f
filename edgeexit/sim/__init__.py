"""The simulated board: a sysfs tree that answers like the board's kernel (in-process or over FUSE).

``edgeexit.sim.physics`` (board physics) is written separately and publishes readings through
:meth:`SimulatedKernel.set_rail` / :meth:`SimulatedKernel.set_temp_mc`.
"""
from __future__ import annotations
