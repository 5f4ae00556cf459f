"""Ctrl-C and SIGTERM at two set-up moments: while the interpreter backend is imported (it is a Ctrl-C,
not "no TFLite interpreter is installed"), and while the state file is written (no .tmp is left)."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List  # noqa: F401 - Dict, List: type comments

import pytest

from edgeexit.dvfs.state import state_path, write_state
from edgeexit.interpreter import resolve_backend

# An extension module's init that a Ctrl-C lands in fails its import: numpy's C API import, for one,
# turns whatever stopped it into "ImportError: numpy.core.multiarray failed to import", chain and all
# dropped. These fake backends do the same, with a real SIGINT to this process.
BROKEN_BY_CTRL_C = {
    "chain dropped": """
        import os, signal, time
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        raise ImportError("numpy.core.multiarray failed to import")
    """,
    "chain kept": """
        import os, signal, time
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt as err:
            raise ImportError("initialization failed") from err
    """,
}


@pytest.fixture
def fake_litert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[None]:
    """A package named ai_edge_litert, first on sys.path, whose interpreter module runs ``request.param``."""
    pkg = tmp_path / "fake" / "ai_edge_litert"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "interpreter.py").write_text(textwrap.dedent(request.param))
    saved = {k: v for k, v in sys.modules.items() if k == "ai_edge_litert" or k.startswith("ai_edge_litert.")}
    for k in saved:
        del sys.modules[k]
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k == "ai_edge_litert" or k.startswith("ai_edge_litert.")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.mark.parametrize("fake_litert", list(BROKEN_BY_CTRL_C.values()), ids=list(BROKEN_BY_CTRL_C), indirect=True)
@pytest.mark.parametrize("requested", ["litert", None])
def test_ctrl_c_during_the_interpreter_import_is_a_ctrl_c(fake_litert: None, requested: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEEXIT_INTERPRETER", raising=False)
    with pytest.raises(KeyboardInterrupt):
        resolve_backend(requested)


class _InterruptedMidWrite(dict):  # type: ignore[type-arg]
    """A value whose serialisation is where the Ctrl-C (or SIGTERM's SystemExit) lands."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(x=1)
        self.exc = exc

    def items(self) -> Any:
        raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_while_the_state_file_is_written_leaves_no_tmp(tmp_path: Path, runtime_dir: Path,
                                                               exc: BaseException) -> None:
    path = state_path("jetson-nano", tmp_path / "t")
    domains = [{"kind": "cpu", "name": "policy0", "path": "p", "saved": {}}]  # type: List[Dict[str, Any]]
    write_state(path, "jetson-nano", tmp_path / "t", True, domains)
    first = path.read_bytes()
    with pytest.raises(type(exc)):
        write_state(path, "jetson-nano", tmp_path / "t", True, domains, {"expected": _InterruptedMidWrite(exc)})
    assert path.read_bytes() == first  # the previous state file stands
    assert sorted(p.name for p in runtime_dir.iterdir()) == [path.name]  # and nothing beside it
