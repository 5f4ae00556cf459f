"""execute()'s defaults: warnings go to stderr (errors.warn_stderr) unless the caller routes them, and the board
model assumes the thread count the runtime's interpreters run."""
from __future__ import annotations

import pytest

import edgeexit.execute as execute_mod
from edgeexit.dvfs import open_board
from edgeexit.errors import PolicyError
from edgeexit.execute import execute
from edgeexit.policies import make_policy
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend


def _run(bundle, rt, **kw):
    with open_board("jetson-nano", simulate=True) as session:
        return execute(bundle, rt, make_policy("full", bundle), bundle.split("evaluation").take(2), session=session,
                       meter="ina3221", **kw)  # an explicit meter on a simulated board is warned about


def test_warnings_reach_stderr_by_default(bundle, capsys):
    with Runtime(bundle) as rt:
        _run(bundle, rt)
        assert "edgeexit: warning: --meter ina3221 is ignored on a simulated board" in capsys.readouterr().err
        said = []
        _run(bundle, rt, warn=said.append)
    assert capsys.readouterr().err == "" and len(said) == 1


def test_the_board_model_runs_the_runtimes_threads(bundle, monkeypatch):
    seen = []
    real = execute_mod.make_probe

    def spy(session, threads, **kw):
        seen.append(threads)
        return real(session, threads, **kw)

    monkeypatch.setattr(execute_mod, "make_probe", spy)
    with Runtime(bundle, num_threads=2) as rt:
        _run(bundle, rt, warn=lambda msg: None)
        _run(bundle, rt, threads=2, warn=lambda msg: None)
        with pytest.raises(PolicyError, match=r"^threads=1 but the Runtime runs num_threads=2: the board model would "
                                              r"time another thread count than ran; leave threads out"):
            _run(bundle, rt, threads=1)
    assert seen == [2, 2]
