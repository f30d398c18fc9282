"""`delete --force` by ID, also of a container that no readable state describes.

A crash can leave a damaged state, or (from outside the runtime) cgroups and processes that
no state lists. What is named for the ID in the default place — runner-<id> in every
hierarchy, or where the config copy put it — is killed and removed; an ID with nothing left
is no error. Loaded by delete --force only."""
from __future__ import annotations

import os

from . import cgroups, fileio, jsonio
from .container import _destroy, _quiet, load
from .errors import ContainerError, DamagedState, NotFound
from .state import StateDir, default_root, sweep


def force_delete(container_id: str, root: str | None = None, report=None) -> None:
    """`delete --force` by ID: remove whatever of the container exists — its processes,
    cgroups and state — also when no state (or only a damaged one) says what; an ID with
    nothing left is no error. `report` is told each thing removed."""
    report = report or _quiet
    root = root or default_root()
    d = StateDir(root, container_id)
    for path in sweep(root):
        report(f"removed {path} (left by a runner that was killed)")
    try:
        load(container_id, root).delete(force=True, report=report)
        return
    except NotFound:
        pass
    except DamagedState as e:
        report(str(e))
    # Nothing readable says what the container owned: what is named for the ID in the
    # default place (or where the config copy, if it is readable, put its cgroup).
    path = ""
    try:
        path = jsonio.loads(fileio.read(os.path.join(d.path, "config.json")))["linux"][
            "cgroupsPath"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for m in dict.fromkeys(("", path if isinstance(path, str) else "")):
        try:
            if ":" in m:  # a --systemd-cgroup container's unit
                from .cgroups.systemd import SystemdManager

                found = SystemdManager.named(container_id, m)
            else:
                found = cgroups.Manager.named(container_id, m)
        except ContainerError:
            continue
        if found.created:
            pids = sorted(found.all_pids())
            found.kill_all()
            if pids:
                report(f"killed {' '.join(map(str, pids))}")
            _destroy(found, report)
    if d.remove():
        report(f"removed state directory {d.path}")
