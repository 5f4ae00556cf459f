"""Suite-wide: state files and locks go to a private runtime directory, never the machine's
/run/edgeexit (tests that care about the directory set their own on top of this)."""
from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private runtime dir (state files and locks) for one test, inherited by its CLI subprocesses."""
    d = tmp_path / "runtime"
    monkeypatch.setenv("EDGEEXIT_RUNTIME_DIR", str(d))
    return d
