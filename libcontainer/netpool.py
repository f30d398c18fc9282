"""Network namespaces made ahead of need, off the path of the next start.

A new network namespace is the dearest part of a container's clone3 here: the kernel
registers every network subsystem's per-namespace state and sysctls for it (~0.5 ms of a
~5 ms start on the bench host, more with nftables loaded), while the process starting it
waits. A process that starts containers one after another (libcontainer.run in a loop,
run_many) gets, from its second container on, a namespace that a worker thread made in the
meantime on another CPU (the C call releases the GIL); the child enters it with setns
instead of CLONE_NEWNET. What it gets is the same: a namespace of its own with only a
loopback device, owned by the runtime's user namespace. The worker also brings lo up, which
the child does in a namespace of its own making (~0.05 ms of its setup: the device's open
and every protocol's notifier); the container sees it up either way.

Only for a config without a user namespace (the network namespace must belong to the user
namespace the container runs in, which does not exist yet) and for root. A one-shot process
(`runner run`) never starts the thread. The namespaces kept
(at most SIZE) are released after IDLE seconds without a take, and at exit.
(container.py counts the starts: this module loads from the second one on.)
"""
from __future__ import annotations

import os
import threading

SIZE = 2
IDLE = 1.0

_pool: list = []  # fds of fresh network namespaces
_state = {"thread": None, "cv": threading.Condition(), "broken": False}


def take() -> int:
    """A fresh network namespace's fd (the caller closes it), or -1: make one as usual."""
    if _state["broken"]:
        return -1
    with _state["cv"]:
        if _state["thread"] is None:  # first: a thread that cannot start takes no fd away
            t = threading.Thread(target=_work, name="libcontainer-netns", daemon=True)
            t.start()
            _state["thread"] = t
        fd = _pool.pop() if _pool else -1
        _state["cv"].notify()
    return fd


def _work() -> None:
    from ._shim import lib

    cv = _state["cv"]
    while True:
        with cv:
            while len(_pool) >= SIZE:
                if not cv.wait(IDLE) and len(_pool) >= SIZE:
                    _release()  # idle: give the namespaces back, stop until needed
                    _state["thread"] = None
                    return
        fd = lib.rc_netns_new()
        with cv:
            if fd < 0:
                # not allowed here (a seccomp filter, no CAP_SYS_ADMIN): never again
                _state["broken"] = True
                _state["thread"] = None
                _release()
                return
            _pool.append(fd)


def _release() -> None:
    while _pool:
        os.close(_pool.pop())


def _forget() -> None:
    """In a forked child: the worker did not come along, and may have held the lock; the
    namespaces are the parent's to hand out (the child's copies of their fds go)."""
    _release()
    _state.update(thread=None, cv=threading.Condition())


os.register_at_fork(after_in_child=_forget)
