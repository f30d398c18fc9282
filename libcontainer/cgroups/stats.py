"""Resource usage, in the shape of runc's `events --stats` (types/events.go): cpu, memory
(usage, max, failcnt, raw memory.stat), pids, blkio, hugetlb. Each group is read from the
hierarchy that handles it; what a host lacks is left out."""
from __future__ import annotations

import os

from . import fs

_TICK_NS = 10**9 // (os.sysconf("SC_CLK_TCK") or 100)


def _v1_dir(m, ctrl: str) -> str:
    d = m.paths.get(ctrl, "")
    return d if d and os.path.isdir(d) else ""


def collect(m) -> dict:
    out: dict = {}
    v2d = m.unified if m.unified and os.path.isdir(m.unified) else ""
    # cpu
    acct, cpu = _v1_dir(m, "cpuacct"), _v1_dir(m, "cpu")
    if acct:
        st = fs.flat_keyed(os.path.join(acct, "cpuacct.stat"))
        percpu = fs.read(os.path.join(acct, "cpuacct.usage_percpu")).split()
        out["cpu"] = {"usage": {"total": fs.read_int(os.path.join(acct, "cpuacct.usage"), 0),
                                "percpu": [int(x) for x in percpu],
                                "kernel": st.get("system", 0) * _TICK_NS,
                                "user": st.get("user", 0) * _TICK_NS}}
    elif v2d and os.path.exists(os.path.join(v2d, "cpu.stat")):
        st = fs.flat_keyed(os.path.join(v2d, "cpu.stat"))
        out["cpu"] = {"usage": {"total": st.get("usage_usec", 0) * 1000,
                                "kernel": st.get("system_usec", 0) * 1000,
                                "user": st.get("user_usec", 0) * 1000}}
    thr = fs.flat_keyed(os.path.join(cpu, "cpu.stat")) if cpu else (
        fs.flat_keyed(os.path.join(v2d, "cpu.stat")) if v2d else {})
    if "nr_periods" in thr:
        out.setdefault("cpu", {})["throttling"] = {
            "periods": thr.get("nr_periods", 0), "throttledPeriods": thr.get("nr_throttled", 0),
            "throttledTime": thr.get("throttled_time", thr.get("throttled_usec", 0) * 1000)}
    # memory
    mem = _v1_dir(m, "memory")
    if mem:
        def entry(prefix: str) -> dict:
            j = lambda n: os.path.join(mem, f"{prefix}.{n}")  # noqa: E731
            return {"limit": fs.read_int(j("limit_in_bytes"), 0),
                    "usage": fs.read_int(j("usage_in_bytes"), 0),
                    "max": fs.read_int(j("max_usage_in_bytes"), 0),
                    "failcnt": fs.read_int(j("failcnt"), 0)}
        raw = fs.flat_keyed(os.path.join(mem, "memory.stat"))
        out["memory"] = {"cache": raw.get("total_cache", raw.get("cache", 0)),
                         "usage": entry("memory"), "swap": entry("memory.memsw"),
                         "kernel": entry("memory.kmem"), "kernelTCP": entry("memory.kmem.tcp"),
                         "raw": raw}
        oom = fs.flat_keyed(os.path.join(mem, "memory.oom_control"))
        out["memory"]["oomKill"] = oom.get("oom_kill", 0)
    elif v2d and os.path.exists(os.path.join(v2d, "memory.current")):
        j = lambda n: os.path.join(v2d, n)  # noqa: E731
        ev = fs.flat_keyed(j("memory.events"))
        raw = fs.flat_keyed(j("memory.stat"))
        out["memory"] = {
            "cache": raw.get("file", 0),
            "usage": {"limit": fs.read_int(j("memory.max"), 0),
                      "usage": fs.read_int(j("memory.current"), 0),
                      "max": fs.read_int(j("memory.peak"), 0), "failcnt": ev.get("max", 0)},
            "swap": {"limit": fs.read_int(j("memory.swap.max"), 0),
                     "usage": fs.read_int(j("memory.swap.current"), 0),
                     "max": fs.read_int(j("memory.swap.peak"), 0), "failcnt": 0},
            "raw": raw, "oomKill": ev.get("oom_kill", 0)}
    # pids
    pd = _v1_dir(m, "pids") or (v2d if v2d and os.path.exists(os.path.join(v2d, "pids.current"))
                                else "")
    if pd:
        out["pids"] = {"current": fs.read_int(os.path.join(pd, "pids.current"), 0),
                       "limit": max(fs.read_int(os.path.join(pd, "pids.max"), 0), 0)}
    # blkio
    bd = _v1_dir(m, "blkio")
    if bd:
        out["blkio"] = {
            "ioServiceBytesRecursive": _blkio(os.path.join(
                bd, "blkio.throttle.io_service_bytes_recursive")),
            "ioServicedRecursive": _blkio(os.path.join(bd, "blkio.throttle.io_serviced_recursive"))}
    elif v2d and os.path.exists(os.path.join(v2d, "io.stat")):
        out["blkio"] = _io_stat(os.path.join(v2d, "io.stat"))
    # hugetlb: v1 where mounted there, else v2
    hd = _v1_dir(m, "hugetlb")
    hv2 = "" if hd else v2d
    sizes = _page_sizes()
    if hd or hv2:
        h = {}
        for size in sizes:
            if hd:
                j = lambda n: os.path.join(hd, f"hugetlb.{size}.{n}")  # noqa: E731
                if not os.path.exists(j("usage_in_bytes")):
                    continue
                h[size] = {"usage": fs.read_int(j("usage_in_bytes"), 0),
                           "max": fs.read_int(j("max_usage_in_bytes"), 0),
                           "failcnt": fs.read_int(j("failcnt"), 0)}
            else:
                j = lambda n: os.path.join(hv2, f"hugetlb.{size}.{n}")  # noqa: E731
                if not os.path.exists(j("current")):
                    continue
                h[size] = {"usage": fs.read_int(j("current"), 0),
                           "max": max(fs.read_int(j("max"), 0), 0),
                           "failcnt": fs.flat_keyed(j("events")).get("max", 0)}
        if h:
            out["hugetlb"] = h
    return out


def _page_sizes() -> list:
    """hugepages-2048kB → 2MB: the names the hugetlb files use."""
    out = []
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return out
    for n in names:
        kb = int(n[len("hugepages-"):-2])
        for unit, div in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
            if kb % div == 0:
                out.append(f"{kb // div}{unit}")
                break
    return sorted(out)


def _blkio(path: str) -> list:
    """`8:0 Read 4096` lines → [{major, minor, op, value}]."""
    out = []
    try:
        text = fs.read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            ma, mi = parts[0].split(":")
            out.append({"major": int(ma), "minor": int(mi), "op": parts[1], "value": int(parts[2])})
    return out


def _io_stat(path: str) -> dict:
    """v2 io.stat `8:0 rbytes=1 wbytes=2 rios=3 wios=4 …` → runc's blkio entries."""
    bytes_, ios = [], []
    try:
        text = fs.read(path)
    except OSError:
        text = ""
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        ma, mi = (int(x) for x in parts[0].split(":"))
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op, lst in (("rbytes", "Read", bytes_), ("wbytes", "Write", bytes_),
                             ("rios", "Read", ios), ("wios", "Write", ios)):
            if key in kv:
                lst.append({"major": ma, "minor": mi, "op": op, "value": int(kv[key])})
    return {"ioServiceBytesRecursive": bytes_, "ioServicedRecursive": ios}
