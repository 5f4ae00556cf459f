"""The Raspberry Pi firmware's ``vcgencmd``: the one way to read what the firmware really does.

A runner takes an argv list and returns stdout. :func:`run_vcgencmd` runs the real command; on a
simulated tree :func:`edgeexit.sim.vcgencmd.simulated_vcgencmd` answers from the files the
simulated kernel renders, in the real command's format, so the same parsers read both.
"""
from __future__ import annotations

import subprocess
from typing import Callable, Optional, Sequence

from edgeexit.errors import EdgeExitError, MeterError, SensorMissingError
from edgeexit.guards.honoured import parse_measure_clock_hz

Runner = Callable[[Sequence[str]], str]
MEASURE_CLOCK_ARM_ARGV = ["vcgencmd", "measure_clock", "arm"]


def run_vcgencmd(argv: Sequence[str]) -> str:
    """Run ``argv`` and return its stdout (the default runner)."""
    try:
        done = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=5.0, check=False)
    except FileNotFoundError:
        raise SensorMissingError(
            "'{}' is not installed: install the Raspberry Pi userland tools (apt install raspi-utils), "
            "or use an external meter (--meter joulescope).".format(argv[0])) from None
    except subprocess.TimeoutExpired:
        raise MeterError("'{}' did not answer within 5 s; retry, or check the firmware.".format(" ".join(argv))) from None
    if done.returncode != 0:
        out = done.stdout.strip()
        if "/dev/vcio" in out:  # mbox_open() failed: prints this on stdout and exits -1
            raise SensorMissingError(
                "'{}' cannot open /dev/vcio: add this user to the video group (sudo usermod -aG video $USER, then "
                "log in again) or run as root; in a container, pass the device (--device /dev/vcio)".format(argv[0]))
        if "error=" not in out:  # "error=N error_msg=..." is the firmware's answer, for the caller to read
            raise SensorMissingError("'{}' failed with status {}: {}; check the Pi's firmware, or pass --meter none "
                                     "(or an external meter, --meter joulescope)".format(
                                         " ".join(argv), done.returncode,
                                         (done.stderr.strip() or out or "no output").splitlines()[0]))
    return done.stdout


def arm_clock_reader(runner: Runner) -> Callable[[], Optional[int]]:
    """The Pi's real ARM clock (kHz) as the firmware reports it, or None when it cannot say.

    On the Pi 5 ``scaling_cur_freq`` echoes the request while the firmware floors the clock at
    1.5 GHz [RPi#5876], so the controller reads its pins back from here instead.
    """
    def read() -> Optional[int]:
        try:
            return parse_measure_clock_hz(runner(MEASURE_CLOCK_ARM_ARGV)) // 1000
        except (EdgeExitError, OSError, ValueError):
            return None

    return read
