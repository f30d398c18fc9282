"""`update`: new limits for a running container, all of them or none.

Engines send every field (`docker update --memory 100m` sends cpu.shares, quota, period,
blkio weight, reservation and kernel memory as 0): zeros are "unchanged" (unset.strip).
Everything that can be checked is checked before the first write: types and ranges, the
update merged with what the container has (swap >= limit), that the host and the
container have each controller, that each file exists. The kernel may still refuse a
value (a memory limit below the usage, a cpuset outside the parent's): then what was
written is put back, from each file's content read before the first write, so that the
engine's idea of the limits and the cgroup's stay the same.
"""
from __future__ import annotations

import os

from . import fs, unset, validate
from ..errors import ConfigError
from ..userns import rootless

# files holding one line per key (a device, an interface, "default"): a write changes the
# line of its key only; a key the file did not list is put back with its "no limit" value
_RESET = {
    "blkio.throttle.read_bps_device": "{} 0", "blkio.throttle.write_bps_device": "{} 0",
    "blkio.throttle.read_iops_device": "{} 0", "blkio.throttle.write_iops_device": "{} 0",
    "blkio.weight_device": "{} 0", "blkio.leaf_weight_device": "{} 0",
    "blkio.bfq.weight_device": "{} 0", "net_prio.ifpriomap": "{} 0",
    "io.max": "{} rbps=max wbps=max riops=max wiops=max", "io.weight": "{} default",
    "io.bfq.weight": "{} default", "rdma.max": "{} hca_handle=max hca_object=max",
}


class Journal:
    """The content of each file an update writes, read before anything is written, and
    the values written to it, to put back on failure."""

    def __init__(self) -> None:
        self.old: dict = {}      # path → content before the update
        self.written: dict = {}  # path → [value, …] the kernel took
        self.order: list = []    # the path of each write the kernel took

    def snapshot(self, directory: str, writes: list) -> None:
        """Read the file each write will go to (the first of its choices that exists);
        a missing file that is not optional is the update's error, before any write."""
        for field, choices, optional in writes:
            for name, _ in choices:
                path = os.path.join(directory, name)
                try:
                    self.old.setdefault(path, fs.read(path))
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise ConfigError(field, f"reading {path}: {e.strerror}") from None
                break
            else:
                if not optional:
                    names = " or ".join(os.path.join(directory, n) for n, _ in choices)
                    raise ConfigError(field, f"cannot be applied: {names} does not exist "
                                             "(the kernel or its configuration lacks it)")

    def note(self, path: str, value: str) -> None:
        """A value the kernel took."""
        self.written.setdefault(path, []).append(value)
        self.order.append(path)

    def restore(self) -> list:
        """Put back every written file, in the reverse order of the writes the kernel
        took: each step back is a state it accepted on the way (limit <= memsw holds
        again). What it refuses is tried once more after the others. Returns the
        failures, as text."""
        todo = []
        for path in reversed(self.order):
            if path in self.old and all(p != path for p, _ in todo):
                todo += [(path, v) for v in put_back(path, self.old[path], self.written[path])]
        failed = []
        for attempt in (0, 1):
            again = []
            for path, value in todo:
                try:
                    fs.write(path, value)
                except OSError as e:
                    again.append((path, value))
                    if attempt:
                        failed.append(f"{path} ({value!r}): {e.strerror}")
            todo = again
        return failed


def put_back(path: str, old: str, written: list) -> list:
    """The writes that give `path` its old content again."""
    name = os.path.basename(path)
    if name == "memory.oom_control":
        for line in old.splitlines():
            if line.startswith("oom_kill_disable "):
                return [line.split()[1]]
        return []
    if name in _RESET:
        lines = {ln.split()[0]: ln for ln in old.splitlines() if ln.strip()}
        out = []
        for value in written:
            key = value.split()[0] if " " in value.strip() else "default"
            line = lines.get(key, _RESET[name].format(key))
            if key == "default" and name == "io.bfq.weight" and key in lines:
                line = lines[key].split()[1]
            if line not in out:
                out.append(line)
        return out
    return [old.strip()]


def update(m, resources: dict, host=None) -> None:
    """Apply `resources` (a partial linux.resources) to the live container of manager `m`."""
    prepare(m, resources, host)()


def prepare(m, resources: dict, host=None):
    """Every check of an update (fields, controllers, files), nothing written: → the
    function that writes it (all or nothing), for a caller that has more to do in between
    (the systemd manager sets the unit's properties)."""
    from .host import detect
    from .writes import GROUP_FIELD, _assign, _merge, _plan_writes, _v2_needed

    res = unset.strip(validate.resources(resources))
    merged = _merge(m.resources, res)
    validate.resources(merged)
    host = host or detect()
    groups = _assign(host, res)
    plan = _plan_writes(host, res, groups, full=merged)
    targets = []
    for g, writes in plan.items():  # (a rootless container has only what was delegated)
        if g.startswith("unified:") or groups.get(g) == "v2":
            if not m.unified:
                field = "unified" if g.startswith("unified:") else GROUP_FIELD[g]
                raise ConfigError(f"linux.resources.{field}", "cannot be applied: the "
                                  "container has no cgroup v2 directory")
            targets.append((m.unified, writes))
        elif g not in m.paths:
            raise ConfigError(f"linux.resources.{GROUP_FIELD[g]}",
                              f"cannot be applied: the container has no {g} cgroup")
        else:
            targets.append((m.paths[g], writes))
    journal = Journal()
    for d, writes in targets:
        journal.snapshot(d, writes)
    if m.unified:
        needed = _v2_needed(plan, groups)
        if needed:
            chain = []
            cur = m.unified
            while cur != host.unified and cur != "/":
                chain.append(cur)
                cur = os.path.dirname(cur)
            m._enable_v2(host, host.unified, chain, needed)
    return lambda: _write(m, res, merged, groups, targets, journal)


def _write(m, res: dict, merged: dict, groups: dict, targets: list, journal: Journal) -> None:
    devices = "devices" in res and not rootless()
    try:
        for d, writes in targets:
            fs.apply(d, writes, journal)
        if devices:
            m._apply_devices(merged)
    except (ConfigError, OSError) as e:
        failed = journal.restore()
        if devices:
            try:
                m._apply_devices(m.resources)
            except (ConfigError, OSError) as e2:
                failed.append(f"the device rules: {e2}")
        if failed:
            msg = f"; putting back the old values failed too: {'; '.join(failed)}"
            if isinstance(e, ConfigError):
                text = str(e)
                if e.field and text.startswith(e.field + ": "):
                    text = text[len(e.field) + 2:]
                raise ConfigError(e.field, text + msg) from None
            raise OSError(e.errno, f"{e}{msg}") from None
        raise
    m.resources = merged
    m.groups.update(groups)
