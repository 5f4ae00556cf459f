"""Suite-wide: state files and locks go to a private runtime directory, never the machine's
/run/edgeexit (tests that care about the directory set their own on top of this)."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_runtime_dir(tmp_path_factory):
    old = os.environ.get("EDGEEXIT_RUNTIME_DIR")
    os.environ["EDGEEXIT_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("edgeexit-run"))
    yield
    if old is None:
        os.environ.pop("EDGEEXIT_RUNTIME_DIR", None)
    else:
        os.environ["EDGEEXIT_RUNTIME_DIR"] = old
