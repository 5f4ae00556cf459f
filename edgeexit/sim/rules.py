"""Kernel write rules for cpufreq and devfreq, per kernel family, as pure functions.

Sources are the tags of /work/shared/reference/boards-and-sysfs.md section 1 ([K49], [K510],
[Kres], [Kus], [K49df], [K510df], [Kdfus]). Both the in-process simulator and the FUSE mount call
these through :class:`edgeexit.sim.kernel.SimulatedKernel`; there is no second copy.
Refusals raise ``OSError`` with the errno the kernel returns.
"""
from __future__ import annotations

import errno
import re
from typing import List, Optional, Tuple

INT_MAX = 2 ** 31 - 1
# Governors whose frequency the simulated board sets from its (idle) load: they sit at the floor.
# performance/powersave/userspace are exact in the kernel and modelled exactly here.


def einval(what: str) -> OSError:
    return OSError(errno.EINVAL, "Invalid argument ({})".format(what))


# --- parsing -----------------------------------------------------------------------------------
# vsscanf's %u/%lu: skip_spaces(), then a digit must follow; a sign is only taken for %d, so "-1" and
# "+5" convert nothing and store() returns EINVAL. Trailing junk is ignored ("123abc" -> 123).
_SSCANF_UINT = re.compile(r"^[ \t\n\v\f\r]*([0-9]+)")
# kstrtoul: one optional '+', digits, one optional trailing newline; '-', blanks and junk are EINVAL.
_KSTRTOUL = re.compile(r"^\+?([0-9]+)\n?\Z")  # \Z: "$" would also let "1\n\n" through
ULONG_BITS = 64  # every board is arm64: %lu and kstrtoul are 64-bit
ULONG_MAX = 2 ** ULONG_BITS - 1


def sscanf_uint(text: str, what: str, bits: int = ULONG_BITS) -> int:
    """``sscanf("%u")`` (``bits=32``) or ``sscanf("%lu")`` (64): simple_strtoull wraps past 2^64 - 1 and
    the result is stored in the conversion's width, so %u keeps the low 32 bits (2^32 + 5 -> 5)."""
    m = _SSCANF_UINT.match(text)
    if not m:
        raise einval("{}: {!r} is not an unsigned number".format(what, text.strip()))
    return int(m.group(1)) % (1 << bits)


def parse_uint(family: str, text: str, what: str) -> int:
    """Parse a ``scaling_{min,max}_freq`` write the way the family's store() does.

    4.9 uses ``sscanf("%u")`` [K49] (low 32 bits kept; the caller clamps to cpuinfo), 5.10-5.15
    ``sscanf("%lu")`` [K510]: leading blanks skipped, trailing junk ignored ("123abc" -> 123), a
    leading '-' or '+' is EINVAL. 6.x uses ``kstrtoul`` [Kkstr]: one optional '+', digits and one
    trailing newline only, ERANGE above 2^64 - 1. 6.x hands the value to the s32 frequency QoS, which
    refuses a negative one since ~6.0 [Kqos]: a value that is negative as s32 is EINVAL, a larger one
    wraps. 5.10-5.15 values above INT_MAX are clamped to INT_MAX (5.10's s32 overflow is not modelled).
    """
    if family == "4.9":
        return sscanf_uint(text, what, 32)
    if family != "6.x":
        return min(sscanf_uint(text, what), INT_MAX)
    m = _KSTRTOUL.match(text)
    if not m:
        raise einval("{}: {!r} is not an unsigned number".format(what, text.strip()))
    value = int(m.group(1))
    if value >= 1 << ULONG_BITS:
        raise OSError(errno.ERANGE, "Numerical result out of range ({}: {} does not fit an unsigned long)".format(
            what, value))
    s32 = value & 0xFFFFFFFF
    if s32 > INT_MAX:
        raise einval("{}: {} is negative as the s32 QoS value".format(what, value))
    return s32


def parse_token(text: str) -> str:
    """``sscanf("%15s")``: the first word, at most 15 characters (a trailing newline is fine)."""
    parts = text.split()
    return parts[0][:15] if parts else ""


def parse_bool(text: str) -> bool:
    """``kstrtobool`` as used by ``cpuN/online``."""
    t = text.strip().lower()
    if t in ("1", "y", "yes", "on"):
        return True
    if t in ("0", "n", "no", "off"):
        return False
    raise einval("online: {!r} is not a boolean".format(text.strip()))


# --- table lookups ------------------------------------------------------------------------------
def in_range(table: List[int], lo: int, hi: int) -> List[int]:
    return [f for f in table if lo <= f <= hi]


# __cpufreq_driver_target clamps the target to [policy->min, policy->max]; the table search that follows
# looks at the whole table [K49]. So with a non-table max (4.9/5.10 store it as written), RELATION_L can pick
# the entry just above max: max 918000 on the Nano runs 921600 for a target of 918000.
def relation_l(table: List[int], lo: int, hi: int, target: int) -> int:
    """CPUFREQ_RELATION_L: the target clamped to [lo, hi], then the lowest entry >= it, else the top."""
    target = max(lo, min(target, hi))
    above = [f for f in table if f >= target]
    return above[0] if above else table[-1]


def relation_h(table: List[int], lo: int, hi: int, target: int) -> int:
    """CPUFREQ_RELATION_H: the target clamped to [lo, hi], then the highest entry <= it, else the lowest."""
    target = max(lo, min(target, hi))
    below = [f for f in table if f <= target]
    return below[-1] if below else table[0]


def table_verify(table: List[int], lo: int, hi: int) -> Tuple[int, int]:
    """``cpufreq_frequency_table_verify``: with no entry in [lo, hi], raise hi to the next entry [Kft]."""
    if not in_range(table, lo, hi):
        larger = [f for f in table if f > hi]
        if larger:
            hi = larger[0]
    return lo, hi


# --- cpufreq -------------------------------------------------------------------------------------
def cpufreq_effective(family: str, table: List[int], min_v: int, max_v: int) -> Tuple[int, int]:
    """Effective policy limits from the stored values (4.9) or the QoS requests (5.10+)."""
    lo, hi = table[0], table[-1]  # cpuinfo_min/max
    min_v = max(lo, min(min_v, hi))
    max_v = max(lo, min(max_v, hi))
    if family != "4.9" and min_v > max_v:
        min_v = max_v  # cpufreq_verify_within_limits [K510]
    min_v, max_v = table_verify(table, min_v, max_v)
    if family in ("5.15", "6.x"):
        # "cpufreq: Make policy min/max hard requirements" [Kres]: reads return table entries.
        min_v = relation_l(table, table[0], table[-1], min_v)
        max_v = relation_h(table, table[0], table[-1], max_v)
        min_v = min(min_v, max_v)  # [Kres2]
    return min_v, max_v


def cpufreq_store_limit(family: str, table: List[int], which: str, value: int, min_v: int,
                        max_v: int) -> Tuple[int, int]:
    """New (min, max) user requests after a ``scaling_{which}_freq`` write; the shown limits are
    :func:`cpufreq_effective` of them.

    4.9 [K49]: clamped to cpuinfo and kept as the user's pair (``user_policy``), which is what the
    ``min > max`` EINVAL check sees: not the table-verified pair that scaling_{min,max}_freq show (max
    918000 then min 918000 on the Nano shows max 921600, yet min 921600 is then EINVAL).
    5.10+ [K510]: a QoS request, never EINVAL for ordering (resolved when read).
    """
    if family == "4.9":
        value = max(table[0], min(value, table[-1]))
        new_min, new_max = (value, max_v) if which == "min" else (min_v, value)
        if new_min > new_max:
            raise einval("scaling_{}_freq: min {} would exceed the requested max {}".format(which, new_min, new_max))
        return new_min, new_max
    return (value, max_v) if which == "min" else (min_v, value)


def cpufreq_cur(governor: str, table: List[int], eff_min: int, eff_max: int, setspeed: Optional[int],
                event: str = "limits") -> int:
    """The frequency the governor picks on an idle board after ``event``: "set" (a scaling_setspeed
    write) or "limits" (a min/max or governor write, which re-applies the limits)."""
    if governor == "userspace" and setspeed is not None:
        if event == "set":
            # cpufreq_set: the target clamped to [min, max], then RELATION_L [Kus]
            return relation_l(table, eff_min, eff_max, setspeed)
        # limits callback [Kus]: max < setspeed -> max with RELATION_H; min > setspeed -> min; else setspeed
        if setspeed > eff_max:
            return relation_h(table, eff_min, eff_max, eff_max)
        if setspeed < eff_min:
            return relation_l(table, eff_min, eff_max, eff_min)
        return relation_l(table, eff_min, eff_max, setspeed)
    if governor == "performance":
        return relation_h(table, eff_min, eff_max, eff_max)
    # powersave, and every load-driven governor on an idle board, sit at the floor
    return relation_l(table, eff_min, eff_max, eff_min)


# --- devfreq -------------------------------------------------------------------------------------
def devfreq_effective(family: str, table: List[int], min_v: int, max_v: int) -> Tuple[int, int]:
    """Effective (min_freq, max_freq) in Hz: 4.9 stores Hz as written [K49df]; 5.10+ keeps kHz QoS
    requests (max 0 = no limit) and reads back table bounds intersected with them [K510df]."""
    if family == "4.9":
        return min_v, max_v
    lo = max(table[0], min_v * 1000)
    hi = table[-1] if max_v == 0 else min(table[-1], max_v * 1000)
    if lo > hi:
        lo = hi
    return lo, hi


def devfreq_store_limit(family: str, table: List[int], which: str, value: int, min_v: int,
                        max_v: int) -> Tuple[int, int]:
    """New stored (min, max) after a ``{which}_freq`` write."""
    if family == "4.9":
        # EINVAL only when both values are non-zero [K49df]; 0 for max is kept and means no limit
        if which == "min":
            if value and max_v and value > max_v:
                raise einval("min_freq: {} is above max_freq {}".format(value, max_v))
            return max(value, table[0]), max_v
        if value and min_v and value < min_v:
            raise einval("max_freq: {} is below min_freq {}".format(value, min_v))
        return min_v, min(value, table[-1])
    if which == "min":
        return value // 1000, max_v  # dev_pm_qos request in kHz, rounded down
    return min_v, -(-value // 1000)  # rounded up; 0 = no limit


def opp_ceil(table: List[int], freq: int) -> int:
    above = [f for f in table if f >= freq]
    return above[0] if above else table[-1]


def opp_floor(table: List[int], freq: int) -> int:
    below = [f for f in table if f <= freq]
    return below[-1] if below else table[0]


def devfreq_cur(family: str, governor: str, table: List[int], eff_min: int, eff_max: int,
                set_freq: Optional[int], prev: int) -> int:
    """update_devfreq: the governor's target clamped to [min, max], then the recommended OPP: ceil, or
    floor when max clamped it (DEVFREQ_FLAG_LEAST_UPPER_BOUND) [K49df][Kdfus].

    What the governor returns decides which: 4.x's governor_userspace clamps the request to [min, max]
    itself [Kdfus] and governor_performance returns max_freq itself, so max never clamps them and a
    non-table max rounds up ("jumps to 998" above a 950 MHz max [Jover#3]). 5.10+ (mainline 5.10's
    governor_userspace.c and governor_performance.c; [Kdfus] is the 4.x file) return the raw request and
    DEVFREQ_MAX_FREQ, which update_devfreq clamps to max and rounds down. A limit of 0 (4.9 keeps a
    written max_freq 0) is no limit: 4.9 clamps only ``if (max_freq && freq > max_freq)``."""
    own_clamp = family == "4.9"
    if governor == "userspace":
        target = prev if set_freq is None else set_freq  # unset -> previous frequency
        if own_clamp and set_freq is not None:
            if eff_max and target > eff_max:
                target = eff_max
            if eff_min and target < eff_min:
                target = eff_min
    elif governor == "performance":
        target = (eff_max or ULONG_MAX) if own_clamp else ULONG_MAX  # ULONG_MAX = DEVFREQ_MAX_FREQ
    else:  # powersave (min_freq / 0) and the load-driven governors on an idle board
        target = 0
    if eff_min and target < eff_min:
        target = eff_min
    if eff_max and target > eff_max:
        return opp_floor(table, eff_max)
    return opp_ceil(table, target)


def devfreq_unknown_governor_errno(family: str) -> int:
    """4.9 returns ENODEV for a governor it does not know; 5.10+ fails request_module -> EINVAL."""
    return errno.ENODEV if family == "4.9" else errno.EINVAL
