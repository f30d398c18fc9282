"""Cgroup directories made ahead of need, off the path of the next start.

A container gets a directory of its own in every cgroup hierarchy: on a hybrid host nine
v1 mkdirs on the path of every start (~0.1-0.25 ms; the memory controller's is the dearest,
and a new cpuset must be filled before a task may join it). A process that starts
containers one after another (libcontainer.run in a loop) gets, from its second cgroup on,
v1 directories a worker thread made meanwhile, each renamed (rename(2) within its parent,
~5 us) to the container's name. The worker is woken once a container's init runs
(creation.py calls kick()), while the caller mostly waits for it: woken at the take, it
took the GIL and the kernel's cgroup lock from the container being made, and the path
gained nothing (measured, see spec/PERFORMANCE.md). What
it gets is what a mkdir gives: a new cgroup in which no task has ever been, its counters at
zero, nothing written in it but the cpuset's cpus and mems copied from the parent (as the
Manager writes them at creation); the container's own writes (device rules, limits) are
made on its path as before.

Only v1 directories: cgroup2 refuses rename (EPERM), so a pure v2 host never uses this and
the v2 directory of a hybrid host is made as before. Only for root (not a rootless or
delegated tree), for a directory made fresh right in this process's own cgroup (the
default `runner-<id>` place), never when joining one that exists; any failure falls back
to mkdir. Not for a systemd-driven cgroup (systemd makes those). A one-shot process
(`runner run`) never starts the thread (manager.py counts the makes: this module loads
from the second one on).

Spares are hidden and named `.libcontainer-spare-<pid>-<start time>-<n>`: a process that
starts a pool removes the spares of owners no longer alive (a SIGKILLed one), never a live
one's. Kept at most SIZE per hierarchy, removed after IDLE seconds without a container
made, and at exit (a forked child leaves its parent's alone).
"""
from __future__ import annotations

import os
import threading

from ..state import alive, proc_stat

SIZE = 2
IDLE = 1.0
PREFIX = ".libcontainer-spare-"

_pool: list = []  # (parents, name) of complete spares: a directory `name` in each parent
_state = {"thread": None, "cv": threading.Condition(), "broken": False, "shape": (),
          "closing": False, "n": 0, "exit_hook": False, "kicked": False}


def take_for(manager, host) -> set:
    """Rename a spare into each of `manager`'s v1 directories that is planned fresh right
    in our own cgroup; the directories so made (the rest are for mkdir, as usual)."""
    from .host import detect

    own = detect()  # ours, even where `host` is a caller's (the warm server)
    planned = set(manager.created)
    want = {}
    for ctrl, d in manager.paths.items():
        mnt = host.v1.get(ctrl)
        parent = os.path.dirname(d)
        if mnt and d in planned and parent not in planned and \
                mnt == own.v1.get(ctrl) and parent == os.path.normpath(mnt + own.own.get(ctrl, "/")):
            want[d] = parent
    if not want:
        return set()
    name = take(tuple(sorted(set(want.values()))))
    if name is None:
        return set()
    made = set()
    for d, parent in want.items():
        spare = os.path.join(parent, name)
        try:
            os.rename(spare, d)
            made.add(d)
        except OSError:
            # d exists after all (made meanwhile: mkdir says so as before), or the spare
            # was swept: this one is made as usual, and the spare goes if it is there
            _rmdir(spare)
    return made


def take(shape: tuple) -> str | None:
    """The name of a spare present in each directory of `shape` (its parents), now the
    caller's to rename, or None: make them as usual."""
    if _state["broken"]:
        return None
    cv = _state["cv"]
    with cv:
        if _state["thread"] is None:
            if not _state["exit_hook"]:
                import atexit

                atexit.register(_at_exit)
                _state["exit_hook"] = True
            _state["closing"] = False
            t = threading.Thread(target=_work, name="libcontainer-cgroups", daemon=True)
            t.start()
            _state["thread"] = t
        name = None
        _state["shape"] = shape  # the worker removes spares of another and makes these
        for i, (s, n) in enumerate(_pool):
            if s == shape:
                name = _pool.pop(i)[1]
                break
    # the worker is not woken now: it would take the GIL and the cgroup lock from the
    # container being made (measured: +0.06 ms on its path); kick() wakes it
    return name


def kick() -> None:
    """A container was made (creation.py calls this once its init runs): the worker
    replaces the spares taken, while the caller waits for the container or goes on with
    its own work."""
    cv = _state["cv"]
    with cv:
        _state["kicked"] = True
        cv.notify()


def _work() -> None:
    cv = _state["cv"]
    swept = set()
    while True:
        with cv:
            while True:
                if _state["closing"]:
                    return
                _drop_stale()
                if len(_pool) < SIZE and _state["kicked"]:
                    break
                _state["kicked"] = False
                if not cv.wait(IDLE) and not _state["kicked"]:
                    _release()  # idle: remove them, stop until needed
                    _state["thread"] = None
                    return
            shape = _state["shape"]
            _state["n"] += 1
            n = _state["n"]
        for parent in shape:
            if parent not in swept:
                swept.add(parent)
                _sweep(parent)
        name = f"{PREFIX}{os.getpid()}-{_start()}-{n}"
        ok = _make(shape, name)
        with cv:
            if not ok or _state["closing"]:
                _remove(shape, name)
                if not ok:
                    # not allowed here (an LSM, a full hierarchy): never again in this process
                    _state["broken"] = True
                    _state["thread"] = None
                    _release()
                return
            _pool.append((shape, name))


def _make(shape: tuple, name: str) -> bool:
    """One spare: a directory of `name` in every parent of `shape`; a cpuset one filled
    from its parent (no task joins an empty one), as the Manager fills a new one."""
    from . import fs
    from .host import detect

    cpuset = detect().v1.get("cpuset")
    try:
        for parent in shape:
            d = os.path.join(parent, name)
            os.mkdir(d, 0o755)
            if cpuset and (parent == cpuset or parent.startswith(cpuset + "/")):
                for f in ("cpuset.cpus", "cpuset.mems"):
                    fs.write(os.path.join(d, f), fs.read(os.path.join(parent, f)).strip())
        return True
    except OSError:
        return False


def _drop_stale() -> None:
    """(with the lock held) remove the spares made for parents no longer asked for."""
    for shape, name in [e for e in _pool if e[0] != _state["shape"]]:
        _pool.remove((shape, name))
        _remove(shape, name)


def _release() -> None:
    """(with the lock held) remove every spare kept."""
    while _pool:
        _remove(*_pool.pop())


def _remove(shape: tuple, name: str) -> None:
    for parent in shape:
        _rmdir(os.path.join(parent, name))


def _rmdir(d: str) -> None:
    try:
        os.rmdir(d)  # an empty cgroup that never held a task: goes at once
    except OSError:
        pass  # never made (a failed make), or renamed meanwhile


_me: list = [0, 0]  # pid, its start time


def _start() -> int:
    if _me[0] != os.getpid():
        st = proc_stat(os.getpid())
        _me[:] = [os.getpid(), st[1] if st else 0]
    return _me[1]


def _sweep(parent: str) -> None:
    """Remove the spares in `parent` whose owner is not alive (the same pid and start
    time): one SIGKILLed while it held some."""
    try:
        with os.scandir(parent) as entries:
            names = [e.name for e in entries if e.name.startswith(PREFIX)]
    except OSError:
        return
    me = os.getpid()
    for name in names:
        try:
            pid, start, _ = name[len(PREFIX):].split("-")
            pid, start = int(pid), int(start)
        except ValueError:
            continue  # not named by us
        if pid != me and not alive(pid, start):
            _rmdir(os.path.join(parent, name))


def _at_exit() -> None:
    """The worker may be making one (a daemon thread stops wherever it is once the
    interpreter finalizes): let it finish and remove it, then remove the kept ones."""
    cv = _state["cv"]
    with cv:
        _state["closing"] = True
        t = _state["thread"]
        cv.notify_all()
    if t is not None:
        t.join(5)
    with cv:
        _state["thread"] = None
        _release()


def _forget() -> None:
    """In a forked child: the worker did not come along, and may have held the lock; the
    spares are the parent's to hand out and remove (the child's own, if it makes some,
    carry its pid)."""
    _pool.clear()
    _state.update(thread=None, cv=threading.Condition(), closing=False, shape=(), kicked=False)


os.register_at_fork(after_in_child=_forget)
