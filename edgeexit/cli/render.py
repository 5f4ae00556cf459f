"""Human output helpers shared by commands: tables, progress bars, JSON."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import click


def warn(msg: str) -> None:
    """One warning line on stderr (the run goes on)."""
    click.echo("edgeexit: warning: {}".format(msg), err=True)


def echo_json(obj: Any, err: bool = False, indent: Optional[int] = 2) -> None:
    """``obj`` as JSON on stdout (stderr with ``err``). A closed stream (`>&-`) dropped it without a word and exit 0;
    a full one (`> /dev/full`) said only "No space left on device" (a review): both now say where and why."""
    from edgeexit.errors import OutputError

    where = "stderr" if err else "stdout"
    if (sys.stderr if err else sys.stdout) is None:
        raise OutputError("{} is closed, so the JSON result would be lost; run with {} open, or leave --json "
                          "out".format(where, where))
    try:
        click.echo(json.dumps(obj, indent=indent, sort_keys=True, default=str), err=err)
    except BrokenPipeError:
        raise  # the reader went away (`| head`): the CLI exits quietly
    except OSError as exc:
        raise OutputError("cannot write the JSON result to {} ({}); send it somewhere with room, or leave --json "
                          "out".format(where, exc.strerror or exc)) from None


def table(rows: Sequence[Sequence[Any]], header: Optional[Sequence[str]] = None) -> str:
    cells: List[List[str]] = [[_fmt(c) for c in r] for r in ([header] if header else []) + list(rows)]
    if not cells:
        return ""
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(max(len(r) for r in cells))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in cells]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "{:,.0f}".format(v) if abs(v) >= 1e4 else "{:.4g}".format(v)
    return str(v)


def key_values(d: Dict[str, Any]) -> str:
    def grouped(k: str, v: Any) -> Any:
        # counts read like the floats beside them (7,666,272 next to 1,500,636); clocks stay as --cpu-khz takes them
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000 and not k.endswith(("_khz", "_hz")):
            return "{:,}".format(v)
        return v

    return table([(k, grouped(k, v)) for k, v in d.items()])


@contextmanager
def progress(total: int, label: str, enabled: bool = True) -> Iterator[Any]:
    """A progress bar on stderr for work longer than a moment; a no-op updater otherwise."""
    show = enabled and total >= 50 and sys.stderr.isatty()
    if not show:
        yield lambda n=1: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


@contextmanager
def stages(command: str, lines_when_piped: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """Progress through a few named stages, as ``update(stage, done, total)`` (``total`` 0: a stage before
    the counted ones): a bar on a terminal; else, with ``lines_when_piped``, one line per stage on stderr,
    so long work in a log never looks hung."""
    bar = click.progressbar(length=1, label=command, file=sys.stderr) if sys.stderr.isatty() else None

    def update(stage: str, done: int, total: int) -> None:
        if bar is not None:
            bar.length = max(total, 1)
            bar.label = "{}: {}".format(command, stage)
            if done > bar.pos:
                bar.update(done - bar.pos)
            else:
                bar.render_progress()  # update(0) draws nothing: the new stage's name would not show
        elif lines_when_piped:
            count = "{}/{} ".format(done, total) if total else ""
            click.echo("edgeexit {}: {}{}".format(command, count, stage), err=True)

    try:
        yield update
    finally:
        if bar is not None:
            bar.render_finish()
