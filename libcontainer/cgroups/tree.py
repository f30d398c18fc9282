"""The cgroup directories themselves: a sub-cgroup's path, filling a new v1 cpuset,
the processes below a directory and whether they are frozen elsewhere, removing
directories we made, spares made ahead (spares.py) taken for them."""
from __future__ import annotations

import os
import time

from . import fs, v1
from .host import detect
from ..errors import ConfigError
from ..userns import rootless


def _sub_dir(base: str, sub: str) -> str:
    d = os.path.normpath(os.path.join(base, sub.lstrip("/")))
    if d != base and not d.startswith(base + "/"):
        raise ConfigError("--cgroup", f"{sub!r} leads out of the container's cgroup")
    return d


def _alive(pid: int) -> bool:
    """Not a zombie, not gone (a zombie still listed somewhere needs no killing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:data.rindex(b")") + 3] not in (b"Z", b"X")


def frozen_elsewhere(pids, own_freezer: str | None) -> list:
    """(pid, freezer directory) for each of `pids` frozen by a v1 freezer cgroup other
    than `own_freezer`."""
    mnt = detect().v1.get("freezer")
    if not mnt:
        return []
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            _, ctrls, path = line.split(":", 2)
            if "freezer" in ctrls.split(","):
                d = os.path.normpath(mnt + path)
                if d != own_freezer and v1.frozen(d):
                    out.append((pid, d))
    return out


def _freeze_flag(d: str) -> bool:
    """cgroup.freeze of a v2 directory is 1 (an empty frozen cgroup says so only here)."""
    try:
        return fs.read(os.path.join(d, "cgroup.freeze")).strip() == "1"
    except OSError:
        return False


def _cpuset_fill(chain: list, new: set) -> None:
    """A new v1 cpuset starts empty, and no task can join an empty one: fill each directory
    of `chain` (top down) from its parent. One made by someone else (an engine's pod
    cgroup) may have been left empty too: filled the same way, as runc does. Those in `new`
    (just made) are known empty without a look."""
    above: dict = {}
    for d in chain:
        values = {}
        for name in ("cpuset.cpus", "cpuset.mems"):
            path = os.path.join(d, name)
            value = "" if d in new else fs.read(path).strip()
            if not value:
                value = above.get(name) or fs.read(os.path.join(os.path.dirname(d),
                                                                name)).strip()
                fs.write(path, value)
            values[name] = value
        above = values


def _tree_procs(d: str) -> list:
    out = []
    for base, _, _ in os.walk(d):
        try:
            out += [int(p) for p in fs.read(os.path.join(base, "cgroup.procs")).split()]
        except OSError:
            pass
    return out


def remove_parent(d: str) -> None:
    """rmdir a shared parent that destroy(parents=…) handed back; kept if still in use."""
    _rmdir(d, False)


def _rmdir(d: str, leaf: bool) -> bool:
    """Remove a directory we created. A container's own directory may hold sub-cgroups
    (made by the container through a writable cgroup mount): they go first, and EBUSY
    means tasks are still leaving, so wait. A parent (made for a linux.cgroupsPath) stays
    while it still holds other containers."""
    delay = 0.001
    deadline = time.monotonic() + 10
    while True:
        try:
            os.rmdir(d)  # control files do not count: this fails only for sub-cgroups or tasks
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            if not leaf:
                return False  # a shared parent: still in use, or not ours to remove
            if e.errno not in (16, 39):  # EBUSY, ENOTEMPTY
                raise
            with os.scandir(d) as entries:  # d_type: no stat per control file
                subs = [x.path for x in entries if x.is_dir(follow_symlinks=False)]
            for sub in subs:
                _rmdir(sub, True)
            if subs:
                continue
            if time.monotonic() > deadline:
                raise OSError(e.errno, f"removing {d}: {e.strerror}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


_makes = [0]  # cgroups this process made


def spares_taken(m, host) -> set:
    """From this process's second cgroup on, the v1 directories of Manager `m` renamed
    from spares a worker thread made ahead (spares.py); a one-shot process loads nothing
    more."""
    _makes[0] += 1
    if _makes[0] < 2 or rootless() or not m.paths:  # (rootless: not root, or in a userns)
        return set()
    from . import spares

    return spares.take_for(m, host)
