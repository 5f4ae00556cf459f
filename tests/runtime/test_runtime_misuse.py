"""The Runtime used wrongly from the library: each mistake is a one-line edgeexit error naming its fix."""
from __future__ import annotations

import pytest

from edgeexit.errors import InterpreterError
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_a_bad_thread_count_is_named_as_such(bundle, bad):
    with pytest.raises(InterpreterError, match="num_threads=.* is not a thread count; pass an int of at least 1") as err:
        Runtime(bundle, num_threads=bad)
    assert "loadable" not in str(err.value) and "\n" not in str(err.value)


def test_the_thread_count_is_kept(bundle):
    with Runtime(bundle, num_threads=2) as rt:
        assert rt.num_threads == 2


def _closed(bundle):
    rt = Runtime(bundle)
    rt.close()
    return rt


def test_a_closed_runtime_says_so(bundle):
    from edgeexit.bundle.data import quantize_inputs
    from edgeexit.execute import execute
    from edgeexit.policies import make_policy

    samples = bundle.split("evaluation").take(2)
    xq = quantize_inputs(samples.x, bundle.manifest.input)
    pol = make_policy("full", bundle)
    live = Runtime(bundle)
    table = live.exit_table(xq, keep_block0=True)
    rt = _closed(bundle)
    calls = [lambda: rt.infer(xq[0], pol), lambda: rt.exit_table(xq), lambda: rt.block_outputs(table, 3),
             lambda: execute(bundle, rt, pol, samples)]
    for call in calls:
        with pytest.raises(InterpreterError, match=r"^this Runtime is closed .*; create a new Runtime\(bundle\)"):
            call()
    live.close()


def test_the_package_docstring_example_runs():
    import edgeexit

    doc = edgeexit.__doc__
    lines = doc.split("::\n", 1)[1].splitlines()
    code = "\n".join(line[4:] for line in lines if line.startswith("    ") or not line.strip())
    scope: dict = {}
    exec(compile(code, "edgeexit/__init__.py docstring", "exec"), scope)
    assert 0 <= scope["result"].exit < len(scope["bundle"].exits)
    assert scope["result"].label == int(scope["result"].label)


@pytest.mark.parametrize("name", ["full", "threshold", "predictive", "pe-heuristic", "eenet"])
def test_infer_binds_a_policy_straight_from_make_policy(bundle, name):
    from edgeexit.bundle.data import quantize_inputs
    from edgeexit.policies import make_policy
    from edgeexit.runner import run_samples

    samples = bundle.split("evaluation").take(3)
    xq = quantize_inputs(samples.x, bundle.manifest.input)
    with Runtime(bundle) as rt:
        want = [r["label"] for r in run_samples(rt, make_policy(name, bundle), samples).records]
        pol = make_policy(name, bundle)
        assert [rt.infer(x, pol).label for x in xq] == want
        with Runtime(bundle) as other:  # bound to another runtime: bound again to this one
            assert [other.infer(x, pol).label for x in xq] == want
            assert pol.runtime is other


@pytest.mark.parametrize("bad", ["threshold", None, object()])
def test_infer_refuses_what_is_not_a_policy(bundle, bad):
    from edgeexit.bundle.data import quantize_inputs
    from edgeexit.errors import PolicyError

    xq = quantize_inputs(bundle.split("evaluation").x[:1], bundle.manifest.input)
    with Runtime(bundle) as rt, pytest.raises(PolicyError, match="must be an ExitPolicy, not .*; build one with "
                                                                 r"edgeexit.policies.make_policy\(name, bundle\)$"):
        rt.infer(xq[0], bad)


def test_a_ctrl_c_in_a_segments_finalizer_is_delivered_after_close(bundle):
    """Dropping the segments runs LiteRT's finalizers; a Ctrl-C landing in one used to print "Exception ignored
    in ... __del__" and vanish. close() holds it until the segments are gone, then raises it."""
    import os
    import signal

    class Finalizer:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)

    rt = Runtime(bundle)
    rt.blocks = rt.blocks + [Finalizer()]
    with pytest.raises(KeyboardInterrupt):
        rt.close()
    assert rt.closed and rt.blocks == []
