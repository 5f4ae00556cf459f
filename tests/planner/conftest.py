"""The demo bundle and one runtime over it, shared by a test module's planner runs."""
from __future__ import annotations

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.runtime import Runtime


@pytest.fixture(scope="module")
def bundle_rt():
    b = load_bundle()
    with Runtime(b) as rt:
        yield b, rt
