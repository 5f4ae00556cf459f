"""The udev rule that lets a non-root group set clocks (printed by `edgeexit boards --udev-rule`)."""
from __future__ import annotations

GROUP = "edgeexit"


def udev_rule(group: str = GROUP) -> str:
    """Rules for /etc/udev/rules.d/99-edgeexit.rules: group-writable cpufreq and devfreq nodes."""
    cpu_files = "scaling_governor scaling_min_freq scaling_max_freq scaling_setspeed"
    dev_files = "governor min_freq max_freq"
    return "\n".join([
        "# /etc/udev/rules.d/99-edgeexit.rules -- let group '{g}' set CPU/GPU clocks without root.".format(g=group),
        "# Install: sudo groupadd -f {g} && sudo usermod -aG {g} $USER".format(g=group),
        "#          sudo udevadm control --reload && sudo udevadm trigger -s cpu -s devfreq   (or reboot)",
        "# devfreq's userspace/set_freq is created when that governor starts, so it stays root-only:",
        "# edgeexit then pins the GPU with min_freq/max_freq instead, its governor left as it was.",
        "# On a Raspberry Pi, also: sudo usermod -aG video $USER  (vcgencmd, which reads the clock that",
        "# really runs and the Pi 5's PMIC rails, talks to the firmware through the video group's devices).",
        'SUBSYSTEM=="cpu", ACTION=="add", RUN+="/bin/sh -c \'cd /sys/devices/system/cpu/cpufreq && '
        'for p in policy*; do for f in {cf}; do chgrp {g} $p/$f && chmod g+w $p/$f; done; done\'"'.format(
            cf=cpu_files, g=group),
        'SUBSYSTEM=="devfreq", ACTION=="add", RUN+="/bin/sh -c \'for f in {df}; do chgrp {g} /sys%p/$f && '
        'chmod g+w /sys%p/$f; done\'"'.format(df=dev_files, g=group),
        "",
    ])
