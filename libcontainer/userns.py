"""Whether this process is root of the host. An unprivileged user is not, and neither is
root of a user namespace (`unshare -r`, a rootless engine's container): the host's cgroups
and /run are not theirs. runc calls both "rootless" and so do we."""
from __future__ import annotations

import os

_in_userns: bool | None = None


def in_user_namespace() -> bool:
    """Not the host's user namespace, which alone maps all 2^32-1 ids (runc's
    RunningInUserNS)."""
    global _in_userns
    if _in_userns is None:
        try:
            with open("/proc/self/uid_map") as f:
                _in_userns = f.read().split() != ["0", "0", "4294967295"]
        except OSError:
            _in_userns = False
    return _in_userns


def rootless() -> bool:
    return os.geteuid() != 0 or in_user_namespace()
