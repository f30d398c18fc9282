"""A container without a mount namespace of its own (none in linux.namespaces, as the spec
allows: it inherits the runtime's) makes its mounts in the runtime's mount namespace.

The init binds the rootfs on itself, mounts the config's mounts below it and chroots into
it (never pivot_root or MS_MOVE there: that would move the host's root). Those mounts
outlive the container's processes: `delete` (and a create that fails) detach the rootfs
bind, which takes everything below it along. Only a bind the container made is detached:
the top mount on the rootfs path is compared with the one that was there before (an
engine's overlay, say, stays)."""
from __future__ import annotations

import ctypes
import os

MNT_DETACH = 2


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if "\\" not in path:
        return path
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 3 < len(path) and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def top_mount(path: str) -> int:
    """The id of the mount on top at `path` (0 if `path` is not a mount point)."""
    path = os.path.realpath(path)
    here: dict = {}  # mount id → parent id, of the mounts at `path`
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split(" ", 5)
            if _unescape(parts[4]) == path:
                here[int(parts[0])] = int(parts[1])
    # one mounted over another at the same path has that one as its parent
    tops = [m for m in here if m not in here.values()]
    return tops[0] if tops else 0


def record(rootfs: str) -> dict:
    """What the state keeps before the init runs: the rootfs and the mount below it."""
    return {"path": os.path.realpath(rootfs), "below": top_mount(rootfs)}


def release(rec: dict | None) -> bool:
    """Detach the container's rootfs bind, with every mount below it. True if it did."""
    if not rec:
        return False
    path = rec["path"]
    top = top_mount(path)
    if not top or top == rec.get("below", 0):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"detaching the container's mounts at {path}: {os.strerror(e)}")
    return True
