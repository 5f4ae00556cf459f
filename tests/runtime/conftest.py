"""The demo bundle and a runtime on it, once per test module."""
from __future__ import annotations

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.runtime import Runtime


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


@pytest.fixture(scope="module")
def rt(bundle):
    with Runtime(bundle) as r:
        yield r
