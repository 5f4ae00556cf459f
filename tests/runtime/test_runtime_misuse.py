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
