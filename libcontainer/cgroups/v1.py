"""cgroup v1: one directory per hierarchy; what each resource writes, the freezer, kill.

Files and formats: Documentation/admin-guide/cgroup-v1/ (memory.rst, cpusets.rst,
blkio-controller.rst, freezer-subsystem.rst, pids.rst, hugetlb.rst, net_cls.rst,
net_prio.rst, rdma.rst) and Documentation/scheduler/sched-bwc.rst.
"""
from __future__ import annotations

import os
import time

from . import fs
from .validate import BASE, page_size


def _w(field: str, name: str, value, optional: bool = False) -> tuple:
    return (f"{BASE}.{field}", ((name, str(value)),), optional)


def _limit(v: int) -> str:
    return "-1" if v == -1 else str(v)


def writes(res: dict) -> dict:
    """{v1 controller: [write, …]} for linux.resources (already validated). Devices are
    done by devices.py, `unified` cannot be done on v1 at all."""
    out: dict = {}
    mem = res.get("memory")
    if mem:
        w = out.setdefault("memory", [])
        if mem.get("limit") is not None:
            w.append(_w("memory.limit", "memory.limit_in_bytes", _limit(mem["limit"])))
        if mem.get("swap") is not None:
            w.append(_w("memory.swap", "memory.memsw.limit_in_bytes", _limit(mem["swap"])))
        elif mem.get("limit") == -1:
            # unlimited memory, swap not given: memory+swap unlimited too, as runc (the
            # kernel keeps limit <= memsw, so a finite memsw would refuse the -1)
            w.append(_w("memory.limit", "memory.memsw.limit_in_bytes", "-1", optional=True))
        if mem.get("reservation") is not None:
            w.append(_w("memory.reservation", "memory.soft_limit_in_bytes",
                        _limit(mem["reservation"])))
        if mem.get("kernelTCP") is not None:
            w.append(_w("memory.kernelTCP", "memory.kmem.tcp.limit_in_bytes",
                        _limit(mem["kernelTCP"])))
        if mem.get("swappiness") is not None:
            w.append(_w("memory.swappiness", "memory.swappiness", mem["swappiness"]))
        if mem.get("disableOOMKiller") is not None:
            w.append(_w("memory.disableOOMKiller", "memory.oom_control",
                        int(mem["disableOOMKiller"])))
        if mem.get("useHierarchy") is not None:
            w.append(_w("memory.useHierarchy", "memory.use_hierarchy", int(mem["useHierarchy"])))
        # memory.kernel: kernel memory is always accounted with the rest since Linux 5.x, and
        # memory.kmem.limit_in_bytes no longer limits anything; like runc, it is not written.
    cpu = res.get("cpu")
    if cpu:
        w = out.setdefault("cpu", [])
        for key, name in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"),
                          ("quota", "cpu.cfs_quota_us"), ("burst", "cpu.cfs_burst_us"),
                          ("realtimePeriod", "cpu.rt_period_us"),
                          ("realtimeRuntime", "cpu.rt_runtime_us"), ("idle", "cpu.idle")):
            if cpu.get(key) is not None:
                v = cpu[key]
                w.append(_w(f"cpu.{key}", name, -1 if key == "quota" and v <= 0 else v))
        if not w:
            del out["cpu"]
        w = [_w(f"cpu.{k}", f"cpuset.{k}", cpu[k]) for k in ("cpus", "mems") if cpu.get(k)]
        if w:
            out["cpuset"] = w
    pids = res.get("pids")
    if pids:
        lim = pids["limit"]
        out["pids"] = [_w("pids.limit", "pids.max", "max" if lim < 0 else lim)]
    bio = res.get("blockIO")
    if bio:
        w = out.setdefault("blkio", [])
        if bio.get("weight") is not None:
            w.append((f"{BASE}.blockIO.weight", (("blkio.weight", str(bio["weight"])),
                                                 ("blkio.bfq.weight", str(bio["weight"]))), False))
        if bio.get("leafWeight") is not None:
            w.append(_w("blockIO.leafWeight", "blkio.leaf_weight", bio["leafWeight"]))
        for i, d in enumerate(bio.get("weightDevice") or ()):
            dev = f"{d['major']}:{d['minor']}"
            if d.get("weight") is not None:
                w.append((f"{BASE}.blockIO.weightDevice[{i}]",
                          (("blkio.weight_device", f"{dev} {d['weight']}"),
                           ("blkio.bfq.weight_device", f"{dev} {d['weight']}")), False))
            if d.get("leafWeight") is not None:
                w.append(_w(f"blockIO.weightDevice[{i}].leafWeight", "blkio.leaf_weight_device",
                            f"{dev} {d['leafWeight']}"))
        for key, name in (("throttleReadBpsDevice", "read_bps_device"),
                          ("throttleWriteBpsDevice", "write_bps_device"),
                          ("throttleReadIOPSDevice", "read_iops_device"),
                          ("throttleWriteIOPSDevice", "write_iops_device")):
            for i, d in enumerate(bio.get(key) or ()):
                w.append(_w(f"blockIO.{key}[{i}]", f"blkio.throttle.{name}",
                            f"{d['major']}:{d['minor']} {d['rate']}"))
        if not w:
            del out["blkio"]
    for i, h in enumerate(res.get("hugepageLimits") or ()):
        page_size(h["pageSize"], "")
        w = out.setdefault("hugetlb", [])
        w.append(_w(f"hugepageLimits[{i}]", f"hugetlb.{h['pageSize']}.limit_in_bytes", h["limit"]))
        # reservations are limited too where the kernel accounts them (5.7+)
        w.append(_w(f"hugepageLimits[{i}]", f"hugetlb.{h['pageSize']}.rsvd.limit_in_bytes",
                    h["limit"], optional=True))
    net = res.get("network")
    if net:
        if net.get("classID") is not None:
            out["net_cls"] = [_w("network.classID", "net_cls.classid", net["classID"])]
        w = [_w(f"network.priorities[{i}]", "net_prio.ifpriomap", f"{p['name']} {p['priority']}")
             for i, p in enumerate(net.get("priorities") or ())]
        if w:
            out["net_prio"] = w
    rdma = res.get("rdma")
    if rdma:
        out["rdma"] = [_w(f"rdma.{dev}", "rdma.max", rdma_line(dev, lim))
                       for dev, lim in rdma.items()]
    return out


def rdma_line(dev: str, lim: dict) -> str:
    """The rdma.max format, the same on v1 and v2."""
    h, o = lim.get("hcaHandles"), lim.get("hcaObjects")
    return (f"{dev} hca_handle={'max' if h is None else h} "
            f"hca_object={'max' if o is None else o}")


# ---- the freezer ---------------------------------------------------------------------

def freeze(freezer_dir: str, frozen: bool, wait: float = 10.0) -> None:
    """Write FROZEN or THAWED and wait until the kernel says it is so: FREEZING means some
    task has not stopped yet (e.g. one that was just forking); writing again retries it."""
    want = "FROZEN" if frozen else "THAWED"
    path = os.path.join(freezer_dir, "freezer.state")
    deadline = time.monotonic() + wait
    delay = 0.0005
    while True:
        fs.write(path, want)
        if fs.read(path).strip() == want:
            return
        if time.monotonic() > deadline:
            if frozen:
                fs.write(path, "THAWED")
            raise OSError(16, f"{path}: the freezer did not reach {want}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def frozen(freezer_dir: str) -> bool:
    try:
        return fs.read(os.path.join(freezer_dir, "freezer.state")).strip() != "THAWED"
    except OSError:
        return False


def procs(directory: str) -> list:
    try:
        return [int(p) for p in fs.read(os.path.join(directory, "cgroup.procs")).split()]
    except OSError:
        return []


def kill_all(directory: str, freezer_dir: str | None, sig: int = 9) -> None:
    """Kill every process in the cgroup: freeze first so that none can fork a child the
    loop would miss, signal them all, thaw so that the signals are delivered."""
    if freezer_dir:
        try:
            freeze(freezer_dir, True)
        except OSError:
            pass
    for pid in procs(freezer_dir or directory):
        if pid <= 0:  # never kill(0) or kill(-1)
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    if freezer_dir:
        freeze(freezer_dir, False)
