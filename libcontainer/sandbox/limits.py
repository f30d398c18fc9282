"""Limits of one sandboxed run, checked once: every error names the field."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from ..errors import InvalidArgument

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20,
          "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


def parse_size(value: "int | str | None", field: str = "size") -> int | None:
    """128m, "64 MiB", 1g, 4096 → bytes (binary units, as Docker's --memory); None stays."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidArgument(f"limits.{field}: {value!r} is not a size")
    if isinstance(value, int):
        n = value
    else:
        text = str(value).strip().lower().replace(" ", "")
        num = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(num):]
        if unit not in _UNITS or not num:
            raise InvalidArgument(f"limits.{field}: {value!r} is not a size (like 64m, 1g, 4096)")
        try:
            n = int(float(num) * _UNITS[unit])
        except ValueError:
            raise InvalidArgument(f"limits.{field}: {value!r} is not a size") from None
    if n <= 0:
        raise InvalidArgument(f"limits.{field}: {value!r} must be more than 0")
    return n


def _seconds(value, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"limits.{field}: {value!r} is not a positive number of seconds")
    return float(value)


def _count(value, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(f"limits.{field}: {value!r} is not a positive whole number")
    return value


@dataclass(frozen=True)
class Limits:
    """What one run may use. None lifts a limit (wall_time never: a run always ends).

    cpu_time: seconds of CPU of the whole run, every process and thread (cgroup accounting).
    wall_time: seconds from start to kill; default 2 x cpu_time + 1.
    memory: bytes (or "128m"), the memory cgroup's limit, swap off; tmpfs files count too.
    pids: processes and threads at once.  output: bytes kept of stdout and of stderr each;
    the rest is read and thrown away.  disk: bytes of the writable layer and of /tmp each.
    open_files: RLIMIT_NOFILE."""
    cpu_time: float | None = 5.0
    wall_time: float | None = None
    memory: int | str | None = "256m"
    pids: int | None = 128
    output: int | str | None = "1m"
    disk: int | str | None = "64m"
    open_files: int | None = 256

    def __post_init__(self) -> None:
        cpu = _seconds(self.cpu_time, "cpu_time")
        wall = _seconds(self.wall_time, "wall_time")
        if wall is None:
            wall = 2 * cpu + 1 if cpu is not None else 60.0
        set_ = object.__setattr__
        set_(self, "cpu_time", cpu)
        set_(self, "wall_time", wall)
        mem = parse_size(self.memory, "memory")
        if mem is not None and mem < 4 << 20:
            raise InvalidArgument(f"limits.memory: {self.memory!r} is below 4 MiB, too little "
                                  "for any process to start")
        set_(self, "memory", mem)
        set_(self, "pids", _count(self.pids, "pids"))
        set_(self, "output", parse_size(self.output, "output"))
        set_(self, "disk", parse_size(self.disk, "disk"))
        set_(self, "open_files", _count(self.open_files, "open_files"))

    def but(self, **changes) -> "Limits":
        """A copy with some fields changed (a wall_time derived from cpu_time is derived
        again)."""
        if "cpu_time" in changes and "wall_time" not in changes:
            changes["wall_time"] = None
        return replace(self, **changes)

    def to_json(self) -> dict:
        """The limits as a dict of field → bytes, seconds or counts (None: lifted)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
