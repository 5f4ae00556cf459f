"""The Runtime used wrongly from the library: each mistake is a one-line edgeexit error naming its fix."""
from __future__ import annotations

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.errors import InterpreterError
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


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
