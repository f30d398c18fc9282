"""Which pages a warm worker makes its own before it takes a call (runner/warm.py).

A forked worker shares the server's memory copy-on-write, and serving a call writes to a
few hundred of those pages (Python's reference counts are in every object it touches):
each write a fault on the call's path, ~2 ms of a `state`. Copying every private writable
page ahead (MADV_POPULATE_WRITE over ~1700 pages) took them off the path, but cost ~4 ms
of CPU per call, and on a small machine that competes with the calls themselves (the
spare forked for the next call copies while this one is served).

So the server learns which pages its calls write: a worker, once its reply is written,
reads which of its pages are now its own (/proc/self/pagemap's exclusive bit: present and
mapped by this process alone) and reports those its fork was not already given; the
server keeps the union, and each worker it forks copies just those, first thing, in a few
madvise calls. (A page the server itself wrote after the fork is exclusive in the worker
too, and gets learned: a few dozen pages of its loop, copied for nothing.) The first
calls after a server starts learn, and pay their faults on the path.
"""
from __future__ import annotations

import array
import os
from errno import EINVAL

MADV_POPULATE_WRITE = 23  # Linux 5.14
PAGE = os.sysconf("SC_PAGE_SIZE")
SHIFT = PAGE.bit_length() - 1
PRESENT, EXCLUSIVE = 1 << 63, 1 << 56
REPORT = b"PAGE"  # a report's first bytes (the server's datagram socket also carries pids)
SETTLED, SMALL, SAMPLE = 16, 8, 16  # (Learned.wants_report)


class Learned:
    """The pages calls wrote, as the server knows them, and as madvise ranges."""

    def __init__(self) -> None:
        self.pages: set = set()
        self.ranges: list = []  # [(address, length)], merged
        self.forks = 0
        self.quiet = 0  # reports in a row that added next to nothing

    def wants_report(self) -> bool:
        """Whether the worker about to be forked should report (reading its page map is
        ~0.5 ms of CPU): each while the set still grows, then one in SAMPLE (a verb not
        called yet adds its pages when it comes)."""
        self.forks += 1
        return self.quiet < SETTLED or self.forks % SAMPLE == 0

    def add(self, report: bytes) -> int:
        """A worker's report (REPORT + page addresses); how many pages were new."""
        data = report[len(REPORT):]
        new = set(array.array("Q", data[:len(data) - len(data) % 8])) - self.pages
        if new:
            self.pages |= new
            self.ranges = _ranges(sorted(self.pages))
        self.quiet = self.quiet + 1 if len(new) < SMALL else 0
        return len(new)


def _ranges(pages: list) -> list:
    out: list = []
    for p in pages:
        if out and out[-1][0] + out[-1][1] == p:
            out[-1][1] += PAGE
        else:
            out.append([p, PAGE])
    return [tuple(r) for r in out]


def prepare() -> None:
    """madvise() as a ctypes function, made by the server before it forks: made in each
    worker, the CDLL and its function class were ~85 copy-on-write faults before the first
    page was populated."""
    global _MADVISE, _ERRNO
    import ctypes

    _MADVISE = ctypes.CDLL(None, use_errno=True).madvise
    _MADVISE.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _ERRNO = ctypes.get_errno


_MADVISE = _ERRNO = None


def populate(ranges: list) -> None:
    """Make these pages this process's own now (a write fault each, taken ahead). A range
    no longer mapped (a buffer a worker had, since freed) is passed over; an older kernel
    (EINVAL) stops it: those faults stay where they were."""
    if not ranges:
        return
    if _MADVISE is None:
        prepare()
    madvise, errno = _MADVISE, _ERRNO
    for start, length in ranges:
        if madvise(start, length, MADV_POPULATE_WRITE) != 0 and errno() == EINVAL:
            return


def report(known: set) -> bytes:
    """REPORT + the addresses of the pages this process has made its own (present and
    exclusive in its private writable mappings) that are not in `known` (none: a report
    all the same, that the server counts)."""
    with open("/proc/self/maps", "rb") as f:
        maps = f.read()
    new = array.array("Q")
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for line in maps.splitlines():
            span, perms = line.split(b" ", 2)[:2]
            if perms != b"rw-p":
                continue
            start, end = (int(x, 16) for x in span.split(b"-"))
            entries = array.array("Q", os.pread(fd, ((end - start) >> SHIFT) * 8,
                                                (start >> SHIFT) * 8))
            for i, v in enumerate(entries):
                if v & PRESENT and v & EXCLUSIVE:
                    page = start + (i << SHIFT)
                    if page not in known:
                        new.append(page)
    finally:
        os.close(fd)
    return REPORT + new.tobytes()
