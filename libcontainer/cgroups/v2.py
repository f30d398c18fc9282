"""cgroup v2: one directory; what each resource writes, controllers, freeze, kill, events.

Files and formats: Documentation/admin-guide/cgroup-v2.rst. Fields without a v2
equivalent are errors here (the config asked for something this host cannot do), except
where runc's documented conversions exist (shares → weight, memory+swap → swap, blkio
weight → io.weight).
"""
from __future__ import annotations

import os
import time

from . import fs
from ..errors import ConfigError
from .v1 import rdma_line
from .validate import BASE, unified_key

# v1 controller (the resource groups are named after them) → v2 controller
V2_NAME = {"blkio": "io", "memory": "memory", "cpu": "cpu", "cpuset": "cpuset",
           "pids": "pids", "hugetlb": "hugetlb", "rdma": "rdma"}


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] → cpu.weight [1, 10000], runc's linear mapping."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] → io.weight [1, 10000]."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_value(swap: int | None, limit: int | None) -> int | None:
    """v1's memory+swap limit → v2's swap-only limit (-1 is max, None leaves it alone).
    An unlimited memory with no swap given means unlimited swap too, as on v1."""
    if not swap:
        return -1 if limit == -1 else None
    if swap == -1:
        return -1
    if limit is None or limit <= 0:
        raise ConfigError(f"{BASE}.memory.swap", "cannot be set without memory.limit on cgroup v2")
    return swap - limit


def _max(v: int) -> str:
    return "max" if v < 0 else str(v)


def _w(field: str, name: str, value, optional: bool = False) -> tuple:
    return (f"{BASE}.{field}", ((name, str(value)),), optional)


def _unsupported(field: str, what: str = "") -> ConfigError:
    return ConfigError(f"{BASE}.{field}", f"is not supported on cgroup v2{what}")


def writes(res: dict, full: dict | None = None) -> dict:
    """{v1-named group: [write, …]}. `full` is the complete resource set when `res` is an
    update of it: pairs written to one file (quota + period) take the missing half there."""
    full = full or res
    out: dict = {}
    mem = res.get("memory")
    if mem:
        w = out.setdefault("memory", [])
        if mem.get("limit") is not None:
            w.append(_w("memory.limit", "memory.max", _max(mem["limit"])))
        lim = mem.get("limit")
        if mem.get("swap") and lim is None:
            lim = (full.get("memory") or {}).get("limit")
        swap = swap_value(mem.get("swap"), lim)
        if swap is not None:
            w.append(_w("memory.swap", "memory.swap.max", _max(swap), optional=swap == -1))
        if mem.get("reservation") is not None:
            w.append(_w("memory.reservation", "memory.low", _max(mem["reservation"])))
        for key in ("kernel", "kernelTCP"):
            if mem.get(key) not in (None, -1, 0):
                raise _unsupported(f"memory.{key}", " (kernel memory is part of memory.max)")
        if mem.get("swappiness") is not None:
            raise _unsupported("memory.swappiness")
        if mem.get("disableOOMKiller"):
            raise _unsupported("memory.disableOOMKiller")
        if mem.get("useHierarchy") is False:
            raise _unsupported("memory.useHierarchy", " (accounting is always hierarchical)")
        if not w:
            del out["memory"]
    cpu = res.get("cpu")
    if cpu:
        w = out.setdefault("cpu", [])
        if cpu.get("shares"):
            w.append(_w("cpu.shares", "cpu.weight", shares_to_weight(cpu["shares"])))
        if cpu.get("quota") is not None or cpu.get("period") is not None:
            fcpu = full.get("cpu") or {}
            q = cpu.get("quota", fcpu.get("quota"))
            per = cpu.get("period", fcpu.get("period")) or 100000
            field = "cpu.quota" if cpu.get("quota") is not None else "cpu.period"
            w.append(_w(field, "cpu.max", f"{'max' if q is None or q <= 0 else q} {per}"))
        if cpu.get("burst") is not None:
            w.append(_w("cpu.burst", "cpu.max.burst", cpu["burst"]))
        if cpu.get("idle") is not None:
            w.append(_w("cpu.idle", "cpu.idle", cpu["idle"]))
        for key in ("realtimeRuntime", "realtimePeriod"):
            if cpu.get(key):
                raise _unsupported(f"cpu.{key}", " (no realtime group scheduling)")
        if not w:
            del out["cpu"]
        w = [_w(f"cpu.{k}", f"cpuset.{k}", cpu[k]) for k in ("cpus", "mems") if cpu.get(k)]
        if w:
            out["cpuset"] = w
    pids = res.get("pids")
    if pids:
        out["pids"] = [_w("pids.limit", "pids.max", _max(pids["limit"]))]
    bio = res.get("blockIO")
    if bio:
        w = out.setdefault("blkio", [])
        if bio.get("weight") is not None:
            wt = bio["weight"]
            w.append((f"{BASE}.blockIO.weight", (("io.bfq.weight", str(wt)),
                      ("io.weight", f"default {blkio_to_io_weight(wt)}")), False))
        if bio.get("leafWeight") is not None:
            raise _unsupported("blockIO.leafWeight")
        for i, d in enumerate(bio.get("weightDevice") or ()):
            dev = f"{d['major']}:{d['minor']}"
            if d.get("leafWeight") is not None:
                raise _unsupported(f"blockIO.weightDevice[{i}].leafWeight")
            w.append((f"{BASE}.blockIO.weightDevice[{i}]",
                      (("io.bfq.weight", f"{dev} {d['weight']}"),
                       ("io.weight", f"{dev} {blkio_to_io_weight(d['weight'])}")), False))
        for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"),
                          ("throttleWriteIOPSDevice", "wiops")):
            for i, d in enumerate(bio.get(key) or ()):
                w.append(_w(f"blockIO.{key}[{i}]", "io.max",
                            f"{d['major']}:{d['minor']} {name}={d['rate'] or 'max'}"))
        if not w:
            del out["blkio"]
    for i, h in enumerate(res.get("hugepageLimits") or ()):
        w = out.setdefault("hugetlb", [])
        w.append(_w(f"hugepageLimits[{i}]", f"hugetlb.{h['pageSize']}.max", h["limit"]))
        w.append(_w(f"hugepageLimits[{i}]", f"hugetlb.{h['pageSize']}.rsvd.max", h["limit"],
                    optional=True))
    net = res.get("network")
    if net and (net.get("classID") is not None or net.get("priorities")):
        raise _unsupported("network", " (use eBPF programs attached to the cgroup instead)")
    rdma = res.get("rdma")
    if rdma:
        out["rdma"] = [_w(f"rdma.{dev}", "rdma.max", rdma_line(dev, lim))
                       for dev, lim in rdma.items()]
    return out


def unified_writes(unified: dict) -> dict:
    """`unified` entries, grouped by v2 controller ("cgroup" for the core files)."""
    out: dict = {}
    for key, value in unified.items():
        ctrl = unified_key(key, f"{BASE}.unified.{key}")
        out.setdefault(ctrl, []).append(_w(f"unified.{key}", key, value))
    return out


# ---- controllers -----------------------------------------------------------------------

def controllers(directory: str) -> set:
    try:
        return set(fs.read(os.path.join(directory, "cgroup.controllers")).split())
    except OSError:
        return set()


def enable(directory: str, wanted: set) -> None:
    """Enable `wanted` controllers for the children of `directory` (skipping a write
    when they already are: the directory may not be ours)."""
    path = os.path.join(directory, "cgroup.subtree_control")
    have = set(fs.read(path).split())
    missing = sorted(wanted - have)
    if missing:
        fs.write(path, " ".join("+" + c for c in missing))


# ---- freeze, kill, events ---------------------------------------------------------------

def events(directory: str) -> dict:
    return fs.flat_keyed(os.path.join(directory, "cgroup.events"))


def wait_event(directory: str, key: str, value: int, timeout: float = 10.0) -> bool:
    """Wait until cgroup.events says `key value`. The kernel signals every change of the
    file to poll() as POLLPRI, so this sleeps instead of spinning."""
    import select

    path = os.path.join(directory, "cgroup.events")
    deadline = time.monotonic() + timeout
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        while True:
            data = os.pread(fd, 4096, 0).decode()
            if f"{key} {value}" in data.splitlines():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            p.poll(min(left, 0.1) * 1000)  # the timeout guards a missed wake-up
    finally:
        os.close(fd)


def freeze(directory: str, frozen: bool, timeout: float = 10.0) -> None:
    """cgroup.freeze, then wait for cgroup.events to confirm: until `frozen 1` some task
    may still be running."""
    fs.write(os.path.join(directory, "cgroup.freeze"), "1" if frozen else "0")
    if not wait_event(directory, "frozen", int(frozen), timeout):
        if frozen:
            fs.write(os.path.join(directory, "cgroup.freeze"), "0")
        raise OSError(16, f"{directory}: the cgroup did not reach frozen {int(frozen)}")


def frozen(directory: str) -> bool:
    return events(directory).get("frozen") == 1


def procs(directory: str) -> list:
    try:
        return [int(p) for p in fs.read(os.path.join(directory, "cgroup.procs")).split()]
    except OSError:
        return []


def kill_all(directory: str, timeout: float = 10.0) -> bool:
    """SIGKILL everything in the cgroup and its children (cgroup.kill, Linux 5.14+), and
    wait until it is empty. False where the kernel has no cgroup.kill."""
    try:
        fs.write(os.path.join(directory, "cgroup.kill"), "1")
    except FileNotFoundError:
        return False
    if timeout:
        wait_event(directory, "populated", 0, timeout)
    return True
