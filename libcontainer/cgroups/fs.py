"""Reading and writing cgroup files, with errors that name the config field and the file.

A resource becomes a list of writes, `(field, choices, optional)`: `choices` are
`(file, value)` pairs tried in order (the first file that exists is written: e.g.
io.bfq.weight, else io.weight), `optional` writes are skipped where no file exists.
"""
from __future__ import annotations

import os

from .. import fileio
from ..errors import ConfigError


def write(path: str, value: str) -> None:
    fileio.write(path, value.encode())


def read(path: str) -> str:
    return fileio.read(path).decode()


def read_int(path: str, default: int | None = None) -> int | None:
    """A file holding one number ('max' reads as -1)."""
    try:
        s = read(path).strip()
    except OSError:
        return default
    if s == "max":
        return -1
    try:
        return int(s)
    except ValueError:
        return default


def flat_keyed(path: str) -> dict:
    """`key value` lines (memory.stat, cpu.stat, memory.events) → {key: int}."""
    out = {}
    try:
        text = read(path)
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def _try(directory: str, w, journal=None) -> OSError | None | bool:
    """One write: None when done (or skipped), the OSError when the kernel refused."""
    field, choices, optional = w
    for name, value in choices:
        path = os.path.join(directory, name)
        try:
            write(path, value)
            if journal is not None:
                journal.note(path, value)
            return None
        except FileNotFoundError:
            continue
        except OSError as e:
            e.filename = os.path.join(directory, name)
            e.value = value  # type: ignore[attr-defined]
            return e
    if optional:
        return None
    names = " or ".join(os.path.join(directory, n) for n, _ in choices)
    raise ConfigError(field, f"cannot be applied: {names} does not exist "
                             "(the kernel or its configuration lacks it)")


def apply(directory: str, writes: list, journal=None) -> None:
    """Write each value; what the kernel refuses is retried once after the others, since
    some pairs constrain each other (cfs_period/quota, memory limit/memsw limit: whichever
    way a limit moves, one of the two orders passes the kernel's limit <= memsw check).
    A `journal` (update.Journal) is told of each file before it is written."""
    deferred = []
    for w in writes:
        err = _try(directory, w, journal)
        if err is not None:
            deferred.append(w)
    for w in deferred:
        err = _try(directory, w, journal)
        if err is not None:
            raise ConfigError(w[0], f"writing {err.value!r} to {err.filename}: "  # type: ignore
                                    f"{err.strerror}{_why(err)}")


def _why(err: OSError) -> str:
    """What the kernel meant, where its errno says little: EBUSY on a v1 memory limit is
    a limit below what the cgroup uses now (runc says so the same way)."""
    name = os.path.basename(err.filename or "")
    if err.errno == 16 and name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
        d = os.path.dirname(err.filename)
        usage = read_int(os.path.join(d, name.replace("limit", "usage")))
        peak = read_int(os.path.join(d, name.replace("limit", "max_usage")))
        return f" (below what the container uses: current usage {usage}, peak usage {peak})"
    return ""
