"""Replaying a policy over a precomputed exit table, with the very same policy code the runtime runs.

Calibration and threshold sweeps need thousands of policy evaluations; running every segment again
for each would be slow. :func:`replay` walks the runtime's loop over an :class:`ExitTable` (every head
evaluated once per sample) instead, so decisions, exits and MACs equal the runtime's exactly (a test
checks this).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from edgeexit.policies.base import ExitPolicy, HeadView, SampleState
from edgeexit.runtime import ExitTable, Runtime


@dataclass
class Replay:
    """Per-sample outcome of a replayed policy."""

    exits: np.ndarray  # (N,)
    macs: np.ndarray  # (N,)
    heads: List[List[int]]
    planned: np.ndarray  # (N,) first forecast, -1 where none
    pred: np.ndarray  # (N,) predicted class

    def accuracy(self, y: np.ndarray) -> float:
        return float((self.pred == y).mean())


def per_sample_cost(exit_blocks: Sequence[int], exits: Sequence[int], heads: Sequence[Sequence[int]],
                    block_cost: Sequence[float], head_cost: Sequence[float]) -> np.ndarray:
    """Per-sample cost, in any unit (MACs, ms, mJ), of what a policy ran: every block up to the sample's
    exit plus the heads it evaluated."""
    to_block = np.cumsum(block_cost)
    return np.array([to_block[exit_blocks[int(e)]] + sum(head_cost[j] for j in hs) for e, hs in zip(exits, heads)])


def replay(rt: Runtime, policy: ExitPolicy, table: ExitTable, labels: Optional[np.ndarray] = None) -> Replay:
    policy.bind(rt)
    n = table.logits_q.shape[0]
    exits = np.zeros(n, dtype=np.int64)
    macs = np.zeros(n, dtype=np.int64)
    planned = np.full(n, -1, dtype=np.int64)
    pred = np.zeros(n, dtype=np.int64)
    heads: List[List[int]] = []
    last = rt.last_exit
    feats = rt.block_outputs(table, policy.feature_block) if policy.feature_block is not None and table.block_outputs else None
    for i in range(n):
        state = SampleState(i, int(labels[i]) if labels is not None else -1)
        policy.start(state)
        if feats is not None:
            state.block_output = feats[i]
        cost = 0
        view = None
        for k, b in enumerate(rt.blocks):
            cost += b.spec.macs
            state.block_index = k
            e = rt.exit_of_block[k]
            if e < 0 or (e != last and not policy.wants_head(e, state)):
                continue
            conf = None if table.conf_q is None else table.conf_q[i, e : e + 1]
            view = HeadView(e, table.logits_q[i, e], rt.decoders[e], conf)
            cost += rt.head_macs[e]
            state.heads.append(e)
            if planned[i] < 0 and state.planned_exit >= 0:
                planned[i] = state.planned_exit
            if e == last or policy.decide(view, state):
                break
        assert view is not None
        exits[i] = view.exit_index
        macs[i] = cost
        pred[i] = view.argmax()
        heads.append(list(state.heads))
    return Replay(exits=exits, macs=macs, heads=heads, planned=planned, pred=pred)
