"""`events`: periodic stats and OOM kills as they happen.

v1: an eventfd registered on memory.oom_control through cgroup.event_control (the kernel
signals it on every OOM in the cgroup, and when the cgroup goes away). v2: memory.events,
which the kernel signals to poll() as POLLPRI on every change. Either way the `oom_kill`
counter decides: an event is one more kill than before, not merely a wake-up.
"""
from __future__ import annotations

import os
import select
import time

from . import fs


class OomWatch:
    """A pollable fd that wakes up on OOM events of one cgroup, and its kill counter."""

    def __init__(self, m) -> None:
        self.fd = -1
        self._efd = -1
        self._file = ""
        self._mask = select.POLLIN
        mem = m.paths.get("memory")
        if mem and os.path.isdir(mem):
            self._file = os.path.join(mem, "memory.oom_control")
            self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            ofd = os.open(self._file, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fs.write(os.path.join(mem, "cgroup.event_control"), f"{self._efd} {ofd}")
            finally:
                os.close(ofd)
            self.fd = self._efd
        elif m.unified and os.path.exists(os.path.join(m.unified, "memory.events")):
            self._file = os.path.join(m.unified, "memory.events")
            self.fd = os.open(self._file, os.O_RDONLY | os.O_CLOEXEC)
            self._mask = select.POLLPRI | select.POLLERR
        self.kills = self.count()

    def count(self) -> int:
        if not self._file:
            return 0
        if self._efd < 0 and self.fd >= 0:
            # read through the polled fd: that is what re-arms its POLLPRI
            text = os.pread(self.fd, 4096, 0).decode()
            for line in text.splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
            return 0
        return fs.flat_keyed(self._file).get("oom_kill", 0)

    def drain(self) -> None:
        if self._efd >= 0:
            try:
                os.eventfd_read(self._efd)
            except BlockingIOError:
                pass

    def new_kills(self) -> int:
        """Kills since the last call."""
        now = self.count()
        n, self.kills = max(now - self.kills, 0), max(now, self.kills)
        return n

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def stream(m, container_id: str, interval: float, alive):
    """Yield runc-shaped events: {"type": "stats", "id", "data"} every `interval` seconds
    and {"type": "oom", "id"} for each OOM kill, until `alive()` turns false."""
    watch = OomWatch(m)
    poller = select.poll()
    if watch.fd >= 0:
        poller.register(watch.fd, watch._mask)
    next_stats = time.monotonic()
    try:
        while True:
            for _ in range(watch.new_kills()):
                yield {"type": "oom", "id": container_id}
            now = time.monotonic()
            if now >= next_stats:
                yield {"type": "stats", "id": container_id, "data": m.stats()}
                next_stats = now + interval
            if not alive():
                return
            # wake for an OOM, for the next stats, and now and then to notice the end
            wait = min(next_stats - time.monotonic(), 0.5)
            if poller.poll(max(wait, 0) * 1000):
                watch.drain()
    finally:
        watch.close()
