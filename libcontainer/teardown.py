"""Removing finished foreground containers off the caller's path.

`run(..., cleanup="background")` returns the exit code as soon as the container's process
is reaped; its delete (the cgroup's directories, the state directory) runs here, on one
worker thread, while the caller starts the next container. Cgroup parents the containers
share (made for a linux.cgroupsPath such as `/jobs/<id>`) are kept while work keeps coming
and removed once the worker has been idle a moment (a mkdir/rmdir pair per hierarchy and
container saved), and at interpreter exit.

Guarantees: a create of the same id in this process waits for that id's teardown; `flush()`
(libcontainer.wait_cleanup) returns once everything queued is gone; at exit the queue is
drained. A teardown that fails is logged (the `libcontainer` logger), not raised.
"""
from __future__ import annotations

import threading
from collections import deque

IDLE = 0.05  # s without new work before the shared parents go

_cv = threading.Condition()
_queue: deque = deque()
_pending: dict = {}   # (root, id) → threading.Event, set when that teardown is done
_parents: set = set()  # shared cgroup parents to remove when idle
_busy = False
_thread = None


def defer(container) -> None:
    """Queue `container.delete(force=True)`."""
    global _thread
    key = (container._dir.root, container.id)
    with _cv:
        _pending[key] = threading.Event()
        _queue.append((key, container))
        if _thread is None:
            import atexit

            atexit.register(flush)
            _thread = threading.Thread(target=_work, name="libcontainer-teardown", daemon=True)
            _thread.start()
        _cv.notify()


def wait_for(root: str, container_id: str) -> None:
    """Block while the teardown of `container_id` under `root` is queued or running."""
    ev = _pending.get((root, container_id))
    if ev is not None:
        ev.wait()


def flush() -> None:
    """Wait until every queued teardown is done and the idle parents are removed."""
    if _thread is None:
        return
    with _cv:
        while _queue or _busy:
            _cv.wait()
        _remove_parents()


def _work() -> None:
    global _busy
    while True:
        with _cv:
            while not _queue:
                if not _parents:
                    _cv.wait()
                elif not _cv.wait(IDLE) and not _queue:
                    _remove_parents()
            key, container = _queue.popleft()
            _busy = True
        try:
            parents: list = []
            container.delete(force=True, _parents=parents)
        except BaseException as e:  # noqa: BLE001 - the caller is gone: log it
            from .log import warning

            warning(f"removing container {container.id!r}: {e}")
            parents = []
        with _cv:
            _parents.update(parents)
            _pending.pop(key).set()
            _busy = False
            _cv.notify_all()


def _remove_parents() -> None:
    """(with _cv held) rmdir the shared parents; one still holding a container stays."""
    from .cgroups import remove_parent

    for d in sorted(_parents, key=len, reverse=True):
        remove_parent(d)
    _parents.clear()
