"""Per-inference records (JSONL, flushed as written) and the run summary."""
from __future__ import annotations

import errno
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

import numpy as np

from edgeexit.errors import OutputError
from edgeexit.paths import writable_output


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


@dataclass
class RunSummary:
    """What `edgeexit run` prints. Energies are None where nothing measured or modelled them."""

    n: int
    policy: str
    accuracy: Optional[float]
    mean_macs: float
    full_macs: int
    macs_reduction_vs_full: float
    mean_latency_ms: float
    p99_latency_ms: float
    latency_source: str
    mean_energy_mj: Optional[float] = None
    energy_source: Optional[str] = None
    exit_histogram: List[int] = field(default_factory=list)
    simulated: bool = False
    board: Optional[str] = None
    model: str = ""
    interpreter: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


class RecordWriter:
    """Writes one JSON object per line and flushes each, so a killed run loses at most one."""

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self._f: Optional[IO[Any]] = None  # text for stdout; binary and unbuffered for a file of our own
        self._own = True
        self._good = 0  # bytes of whole records in our own file: a failed write is cut back to there
        self.closed = False
        self._pending = False  # a file checked, to be opened (truncated) when the run starts
        if path is not None and str(path) == "-":  # the Unix convention: stdout, for piping into jq & co.
            if sys.stdout is None:  # closed (`>&-`): every record would be dropped without a word
                raise OutputError("stdout is closed, so the records would be lost; run with stdout open, or pass "
                                  "--output FILE")
            self._f, self._own = sys.stdout, False
        elif path is not None:
            # Checked now, opened at the first record: a run refused in its setup (a bad --profile, --dvfs)
            # leaves an existing file as it was, and makes none.
            writable_output(path, "the records", "--output FILE")
            self._pending = True

    def start(self) -> None:
        """Open (truncate) the output file; the first record does (the run's setup is done by then)."""
        if self._pending:
            self._pending = False
            try:
                Path(str(self.path)).parent.mkdir(parents=True, exist_ok=True)
                self._f = open(str(self.path), "wb", buffering=0)
            except OSError as err:
                raise self._error(err) from None

    def write(self, record: Dict[str, Any]) -> None:
        if self.closed:  # a record written now would be lost without a word
            where = "stdout" if not self._own else "no file" if self.path is None else str(self.path)
            raise OutputError("this RecordWriter (to {}) is closed; write every record before closing it, or open a new "
                              "RecordWriter".format(where))
        self.start()
        if self._f is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            if self._own:
                self._write_whole(line.encode("utf-8"))
            else:
                self._f.write(line)
                self._f.flush()
        except BrokenPipeError:
            raise  # the reader went away (`| head`): the CLI exits quietly
        except OSError as err:  # a full disk, /dev/full: say which output, mid-run
            raise self._error(err) from None

    def _write_whole(self, data: bytes) -> None:
        """Append one record to our own file, or none of it: a disk that fills mid-record left a torn last
        line (a review: 149 records, then 102 bytes of the 150th), which a JSONL reader fails on."""
        assert self._f is not None
        done = 0
        try:
            while done < len(data):
                n = self._f.write(data[done:])
                if not n:
                    raise OSError(errno.EIO, "the file took no more of the record")
                done += n
        except OSError:
            try:
                os.ftruncate(self._f.fileno(), self._good)
                os.lseek(self._f.fileno(), self._good, os.SEEK_SET)
            except OSError:
                pass
            raise
        self._good += done

    def _error(self, err: OSError) -> OutputError:
        where = "stdout" if not self._own else str(self.path)
        return OutputError("cannot write the records to {} ({}); pass --output somewhere with room, or leave it "
                           "out".format(where, err.strerror or err))

    def close(self) -> None:
        self.closed = True
        f, self._f = self._f, None
        if f is not None and self._own:
            try:
                f.close()
            except OSError as err:
                raise self._error(err) from None

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            self.close()
        except OutputError:
            if exc_type is None:
                raise  # else the error already on its way says more (and closing then fails the same way)
