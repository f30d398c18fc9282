"""Subordinate ids (/etc/subuid, /etc/subgid) and the maps a rootless config gets from them.

An unprivileged process may write only a one-line map of its own id into a child's user
namespace; more (0 → the user, 1..65536 → its subordinate range) goes through the setuid
helpers newuidmap/newgidmap (Debian's `uidmap`), which check these files. `rootless_maps`
decides what `runner spec --rootless` writes and says, in words, what is missing when the
container can only get one id."""
from __future__ import annotations

import os
import shutil

SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"
WANT = 65536  # container ids 1..65536, as podman's default and the files' usual range
# where the helpers live when PATH lacks them (sudo/su often reset it)
HELPER_PATH = os.pathsep.join((os.environ.get("PATH", ""), "/usr/bin", "/usr/sbin", "/bin"))


def ranges(path: str, name: str, own_id: int) -> list:
    """The (start, count) ranges `path` grants the user `name` / `own_id`, in file order
    (entries may name the user or its number, as newuidmap accepts)."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(own_id)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            out.append((start, count))
    return out


def helper(tool: str) -> str | None:
    return shutil.which(tool, path=HELPER_PATH)


def _maps(own: int, rngs: list) -> list:
    """0 → own, then 1.. through the ranges, WANT ids in all."""
    maps = [{"containerID": 0, "hostID": own, "size": 1}]
    next_id, left = 1, WANT
    for start, count in rngs:
        if left == 0:
            break
        n = min(count, left)
        maps.append({"containerID": next_id, "hostID": start, "size": n})
        next_id += n
        left -= n
    return maps


def rootless_maps(uid: int, gid: int, name: str, subuid: str = SUBUID, subgid: str = SUBGID,
                  have_helpers: bool | None = None):
    """(uidMappings, gidMappings, warnings) for a rootless config of user `name`."""
    if have_helpers is None:
        have_helpers = bool(helper("newuidmap") and helper("newgidmap"))
    urng, grng = ranges(subuid, name, uid), ranges(subgid, name, gid)
    if have_helpers and urng and grng:
        return _maps(uid, urng), _maps(gid, grng), []
    one = ([{"containerID": 0, "hostID": uid, "size": 1}],
           [{"containerID": 0, "hostID": gid, "size": 1}])
    why = []
    if not have_helpers:
        why.append("newuidmap/newgidmap are not installed (Debian: apt-get install uidmap)")
    missing = [f for f, r in ((subuid, urng), (subgid, grng)) if not r]
    if missing:
        why.append(f"{' and '.join(missing)} {'have' if len(missing) > 1 else 'has'} no range "
                   f"for {name} (as root: usermod --add-subuids 100000-165535 "
                   f"--add-subgids 100000-165535 {name}, with a range no other user has)")
    warning = (f"the container gets one uid and one gid (0 → {uid}:{gid}): "
               f"{'; '.join(why)}. Without more, files of other owners, chown, su and "
               "package managers fail inside")
    return one[0], one[1], [warning]
