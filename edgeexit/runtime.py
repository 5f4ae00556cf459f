"""The segment runtime: one sample, block by block, under an exit policy.

Blocks after the exit and heads the policy skips never run. Hooks (a DVFS planner, the simulated
board's physics) are called between segments; with no hooks the loop does nothing extra.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeexit.bundle import Bundle, check_bundle
from edgeexit.bundle.manifest import SegmentSpec, TensorSpec
from edgeexit.errors import InputDataError, InterpreterError, PolicyError, warn_stderr
from edgeexit.interpreter import Backend, resolve_backend
from edgeexit.jsonvalues import is_integer
from edgeexit.policies.base import ExitPolicy, HeadDecoder, HeadView, SampleState
from edgeexit.segments import Segment, make_requant
from edgeexit.segment_probe import probe_segments


#: Relative scale difference at a segment boundary worth a warning. Exporter-calibrated chains agree to ~1e-7; a
#: boundary off by more joins segments calibrated apart (e.g. taken from different exports), which requantizes
#: legitimately but ran silently at 1.8% accuracy.
REQUANT_WARN_RTOL = 0.01


def far_requantized(boundaries: Sequence[Tuple[str, TensorSpec, TensorSpec]]) -> List[Tuple[str, float]]:
    """(boundary, output scale / input scale) of every boundary whose scales differ by more than REQUANT_WARN_RTOL."""
    out = []
    for name, src, dst in boundaries:
        ratio = src.scale / dst.scale
        if abs(ratio - 1.0) > REQUANT_WARN_RTOL:
            out.append((name, ratio))
    return out


def check_num_threads(num_threads: Any) -> None:
    """An int >= 1, checked here: the interpreter's own refusal surfaced as "not a loadable TFLite model"."""
    if not is_integer(num_threads) or num_threads < 1:
        raise InterpreterError("num_threads={!r} is not a thread count; pass an int of at least 1 (interpreter "
                               "threads per segment)".format(num_threads))


def check_policy(policy: Any) -> None:
    """An ExitPolicy, not its name (or anything else), which would fail deep inside with an AttributeError."""
    if not isinstance(policy, ExitPolicy):
        what = "the name {!r}".format(policy) if isinstance(policy, str) else "a {}".format(type(policy).__name__)
        raise PolicyError("an exit policy must be an ExitPolicy, not {}; build one with "
                          "edgeexit.policies.make_policy(name, bundle)".format(what))


class RuntimeHooks:
    """Callbacks around segments. Subclass and override what you need; all default to no-ops."""

    def begin(self, state: SampleState) -> None:
        """Before block 0 of a sample."""

    def before_segment(self, spec: SegmentSpec, state: SampleState) -> None:
        """Before a block or exit head runs (the DVFS planner sets the operating point here)."""

    def after_segment(self, spec: SegmentSpec, invoke_ns: int, state: SampleState) -> None:
        """After a segment ran; ``invoke_ns`` is the host's time inside ``invoke()``."""

    def end(self, result: "InferenceResult", state: SampleState) -> None:
        """After the sample exited."""


@dataclass
class InferenceResult:
    """One inference. MACs count the blocks and the exit heads that actually ran."""

    label: int
    exit: int
    exit_block: int
    confidence: float
    macs: int
    blocks_run: int
    heads_run: List[int]
    segment_ns: List[Tuple[str, int]]  # (segment label, ns inside invoke), in execution order
    latency_ms: float  # host wall time of the whole inference, runtime overhead included
    planned_exit: int = -1

    def segment_latency_ms(self) -> Dict[str, float]:
        return {name: ns / 1e6 for name, ns in self.segment_ns}


@dataclass
class ExitTable:
    """Every exit head evaluated on every sample (calibration, benchmarks, the oracle)."""

    logits_q: np.ndarray  # (N, E, C) int8 codes
    logits: np.ndarray  # (N, E, C) dequantized
    confidence: np.ndarray  # (N, E) max-softmax (or the confidence head where present)
    max_softmax: np.ndarray  # (N, E)
    pred: np.ndarray  # (N, E) int64
    conf_q: Optional[np.ndarray] = None  # (N, E) int8 confidence-head codes where the bundle has them
    # Raw int8 outputs of some blocks, per sample, keyed by block index: what forecasters read (see
    # Runtime.block_outputs, which derives later blocks from the latest one kept).
    block_outputs: Dict[int, List[np.ndarray]] = field(default_factory=dict)


class Runtime:
    """Loads a bundle's segments once and runs samples through them.

    Use as a context manager or call :meth:`close`. ``interpreter`` is ``"litert"``, ``"tflite"`` or
    None (``$EDGEEXIT_INTERPRETER``, else LiteRT, else tflite_runtime).
    """

    def __init__(self, bundle: Bundle, interpreter: Optional[str] = None, num_threads: int = 1,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        check_bundle(bundle, "Runtime", InterpreterError)
        check_num_threads(num_threads)
        self.bundle = bundle
        self.num_threads = int(num_threads)  # per segment; what a board model of this run must assume too
        self.backend: Backend = resolve_backend(interpreter)
        m = bundle.manifest
        probe_segments([(s.label, bundle.segment_paths[s.label]) for s in m.blocks + m.exits], self.backend,
                       self.num_threads, warn or warn_stderr)
        self.blocks = [Segment(s, bundle.segment_paths[s.label], self.backend, num_threads) for s in m.blocks]
        self.exits = [Segment(s, bundle.segment_paths[s.label], self.backend, num_threads) for s in m.exits]
        self.decoders = [HeadDecoder(s) for s in m.exits]
        # Requantization is decided here, once: None where int8 codes pass straight through.
        block_pairs = list(zip(m.blocks, m.blocks[1:]))  # (producer, consumer) at every segment boundary
        exit_pairs = [(m.blocks[e.after_block], e) for e in m.exits]
        self.block_requant = [None] + [make_requant(a.output, b.input) for a, b in block_pairs]
        self.exit_requant = [make_requant(a.output, e.input) for a, e in exit_pairs]
        self._warn_far_requant(block_pairs + exit_pairs, warn or warn_stderr)
        self.exit_of_block = [-1] * len(m.blocks)
        for e in m.exits:
            self.exit_of_block[e.after_block] = e.index
        self.last_exit = len(m.exits) - 1
        self.block_macs = [s.macs for s in m.blocks]
        self.head_macs = [s.macs for s in m.exits]
        self.exit_blocks = [s.after_block for s in m.exits]
        # MACs of all blocks up to and including the block each exit sits after.
        cum = np.cumsum(self.block_macs).tolist()
        self.macs_to_exit = [int(cum[b]) for b in self.exit_blocks]
        self.full_macs = int(cum[-1]) + self.head_macs[-1]
        self.closed = False
        # What infer takes (block 0's quantized input), compared per inference: a tuple and a dtype, decided once.
        self.input_shape = tuple(int(d) for d in m.blocks[0].input.shape)
        self.input_dtype = np.dtype(m.blocks[0].input.dtype)

    def _warn_far_requant(self, pairs: Sequence[Tuple[Any, Any]], warn: Callable[[str], None]) -> None:
        """One warning per loaded bundle when a boundary's scales differ by more than REQUANT_WARN_RTOL."""
        bundle = self.bundle
        if bundle.requant_warned:
            return
        far = far_requantized([("{} -> {}".format(a.label, b.label), a.output, b.input) for a, b in pairs])
        if not far:
            return
        bundle.requant_warned = True
        shown = ", ".join("{} (scale ratio {:.3g})".format(name, ratio) for name, ratio in far[:3])
        more = " and {} more".format(len(far) - 3) if len(far) > 3 else ""
        warn("bundle {}: {}{} {} requantized: the segments on either side were calibrated apart (from different "
             "exports?), which costs accuracy; re-export the bundle so the int8 scales chain".format(
                 bundle.root, shown, more, "is" if len(far) == 1 else "are"))

    # -- context management -------------------------------------------------------------------
    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        from edgeexit.signals import signals_held

        # Dropping the segments runs LiteRT's finalizers, where a Ctrl-C would print "Exception ignored"
        # and be lost: it is delivered once they are done.
        with signals_held():
            self.blocks = []
            self.exits = []
            self.closed = True

    def check_open(self) -> None:
        """Raise if :meth:`close` ran: its segments are gone, and an empty loop used to end in a misleading error."""
        if self.closed:
            raise InterpreterError("this Runtime is closed (its segments were released); create a new Runtime(bundle) "
                                   "and run on that")

    def _input_error(self, xq: Any, who: str, batch: bool) -> InputDataError:
        got = "{} {}".format(xq.dtype, tuple(xq.shape)) if isinstance(xq, np.ndarray) else "a {}".format(type(xq).__name__)
        want = ", ".join(["N"] * batch + [str(d) for d in self.input_shape])
        return InputDataError("Runtime.{} takes block 0's quantized input, {} ({}), not {}; quantize raw samples with "
                              "edgeexit.bundle.data.quantize_inputs(x, bundle.manifest.input)".format(
                                  who, self.input_dtype, want, got))

    def bind(self, policy: ExitPolicy) -> None:
        """Bind ``policy`` to this runtime (its tables are precomputed for this bundle)."""
        check_policy(policy)
        policy.bind(self)
        policy.runtime = self  # what infer checks, whether or not a subclass's bind called super().bind

    @property
    def requantized_boundaries(self) -> int:
        return sum(r is not None for r in self.block_requant) + sum(r is not None for r in self.exit_requant)

    # -- inference ----------------------------------------------------------------------------
    def infer(
        self,
        xq: np.ndarray,
        policy: ExitPolicy,
        state: Optional[SampleState] = None,
        hooks: Sequence[RuntimeHooks] = (),
    ) -> InferenceResult:
        """Run one quantized sample (shape = block 0's input) under ``policy``, bound to this runtime first
        if it is not yet (run_samples binds it once per run)."""
        if self.closed:
            self.check_open()
        if getattr(policy, "runtime", None) is not self:
            self.bind(policy)
        if getattr(xq, "shape", None) != self.input_shape or xq.dtype != self.input_dtype:
            raise self._input_error(xq, "infer", False)
        t_start = perf_counter_ns()
        if state is None:
            state = SampleState()
        policy.start(state)
        for hk in hooks:
            hk.begin(state)
        timings: List[Tuple[str, int]] = []
        macs = 0
        h = xq
        view: Optional[HeadView] = None
        exit_of_block = self.exit_of_block
        last = self.last_exit
        k = 0
        for k, seg in enumerate(self.blocks):
            spec = seg.spec
            for hk in hooks:
                hk.before_segment(spec, state)
            rq = self.block_requant[k]
            if rq is not None:
                h = rq(h)
            seg.set_tensor(seg.in_index, h)
            h = None  # drop any view into the previous interpreter before it could be invoked again
            t0 = perf_counter_ns()
            seg.invoke()
            dt = perf_counter_ns() - t0
            h = seg.output()
            timings.append((spec.label, dt))
            macs += spec.macs
            state.block_index = k
            state.block_output = h
            for hk in hooks:
                hk.after_segment(spec, dt, state)
            e = exit_of_block[k]
            if e < 0 or (e != last and not policy.wants_head(e, state)):
                continue
            head = self.exits[e]
            hspec = head.spec
            for hk in hooks:
                hk.before_segment(hspec, state)
            rq = self.exit_requant[e]
            head.set_tensor(head.in_index, h if rq is None else rq(h))
            t0 = perf_counter_ns()
            head.invoke()
            dt = perf_counter_ns() - t0
            conf_q = head.get_tensor(head.conf_index) if head.conf_index >= 0 else None
            view = HeadView(e, head.get_tensor(head.out_index), self.decoders[e], conf_q)
            timings.append((hspec.label, dt))
            macs += hspec.macs
            state.heads.append(e)
            for hk in hooks:
                hk.after_segment(hspec, dt, state)
            if e == last or policy.decide(view, state):
                break
        state.block_output = None  # may be a view into an interpreter buffer: never keep it past the sample
        if view is None:  # cannot happen: the last block always has the final exit
            raise PolicyError("policy {} produced no exit".format(policy.name))
        result = InferenceResult(
            label=view.argmax(),
            exit=view.exit_index,
            exit_block=k,
            confidence=view.confidence(),
            macs=macs,
            blocks_run=k + 1,
            heads_run=list(state.heads),
            segment_ns=timings,
            latency_ms=(perf_counter_ns() - t_start) / 1e6,
            planned_exit=state.planned_exit,
        )
        for hk in hooks:
            hk.end(result, state)
        return result

    def exit_table(self, xq: np.ndarray, keep_block0: bool = False) -> ExitTable:
        """Evaluate every exit on every sample of ``xq`` (N, *input shape); ``keep_block0`` keeps the output
        of the first exit's block, from which :meth:`block_outputs` derives any later block's."""
        self.check_open()
        if not isinstance(xq, np.ndarray) or xq.shape[1:] != self.input_shape or xq.dtype != self.input_dtype:
            raise self._input_error(xq, "exit_table", True)
        n, n_exits = xq.shape[0], len(self.exits)
        logits = np.zeros((n, n_exits, self.bundle.manifest.num_classes), dtype=np.int8)
        conf = np.zeros((n, n_exits), dtype=np.float64)
        maxp = np.zeros((n, n_exits), dtype=np.float64)
        pred = np.zeros((n, n_exits), dtype=np.int64)
        feats: List[np.ndarray] = []
        has_conf = any(h.conf_index >= 0 for h in self.exits)
        conf_codes = np.zeros((n, n_exits), dtype=np.int8) if has_conf else None
        for i in range(n):
            h = xq[i]
            for k, seg in enumerate(self.blocks):
                rq = self.block_requant[k]
                h = seg.run(h if rq is None else rq(h))
                if keep_block0 and k == self.exit_blocks[0]:
                    feats.append(h)
                e = self.exit_of_block[k]
                if e < 0:
                    continue
                head = self.exits[e]
                rq = self.exit_requant[e]
                out = head.run(h if rq is None else rq(h))
                conf_q = head.get_tensor(head.conf_index) if head.conf_index >= 0 else None
                v = HeadView(e, out, self.decoders[e], conf_q)
                logits[i, e] = out.reshape(-1)
                if conf_codes is not None and conf_q is not None:
                    conf_codes[i, e] = conf_q.reshape(-1)[0]
                maxp[i, e] = v.max_softmax()
                conf[i, e] = v.confidence()
                pred[i, e] = v.argmax()
        scale = np.array([d.scale for d in self.decoders], dtype=np.float32)[None, :, None]
        zp = np.array([d.zero_point for d in self.decoders], dtype=np.float32)[None, :, None]
        real = (logits.astype(np.float32) - zp) * scale
        return ExitTable(logits_q=logits, logits=real, confidence=conf, max_softmax=maxp, pred=pred, conf_q=conf_codes,
                         block_outputs={self.exit_blocks[0]: feats} if keep_block0 else {})

    def block_outputs(self, table: ExitTable, block: int) -> List[np.ndarray]:
        """Block ``block``'s output for every sample of ``table``: kept by :meth:`exit_table`, or computed
        from the latest kept block before it (and kept, so replays over many policies pay once)."""
        self.check_open()
        kept = table.block_outputs
        if block in kept:
            return kept[block]
        earlier = [b for b in kept if b < block]
        if not earlier:
            raise PolicyError("the exit table keeps no block output at or before block {}; build it with "
                              "exit_table(..., keep_block0=True)".format(block))
        start = max(earlier)
        outs = []
        for h in kept[start]:
            for k in range(start + 1, block + 1):
                rq = self.block_requant[k]
                h = self.blocks[k].run(h if rq is None else rq(h))
            outs.append(h)
        kept[block] = outs
        return outs
