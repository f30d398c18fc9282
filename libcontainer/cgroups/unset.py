"""Zero means "not set": the `linux.resources` fields that runc and crun leave alone at 0.

Engines fill every field they do not use with 0 (Docker 20.10 writes `"blockIO":
{"weight": 0}` and `"cpu": {"shares": 0}` into every config.json, and `docker update`
sends 0 for each limit it does not change). A 0 written through would be an error
(blkio.weight where the kernel has none, cpu.cfs_period_us) or a limit nobody asked for
(cpu.shares 0 is clamped to 2, memory.limit_in_bytes 0 cannot be reached). runc 1.1
(libcontainer/cgroups/fs, fs2: every `!= 0` test) and crun (cgroup-resources.c: `if
(cpu->shares)`, …) skip these fields at 0, on v1 and v2 alike. Not in the list, since 0 is a
value there: memory.swappiness, cpu.burst, cpu.idle, hugepage limits, throttle rates, rdma.
"""
from __future__ import annotations

ZERO_IS_UNSET = {
    "memory": ("limit", "reservation", "swap", "kernel", "kernelTCP"),
    "cpu": ("shares", "quota", "period", "realtimePeriod", "realtimeRuntime"),
    "pids": ("limit",),
    "blockIO": ("weight", "leafWeight"),
    "network": ("classID",),
}
# memory.swappiness -1 as Go's uint64 holds it (an engine's "default"): runc skips it
SWAPPINESS_UNSET = 2**64 - 1


def strip(res: dict) -> dict:
    """`res` (validated) without the fields that are 0 where 0 means not set, without
    disableOOMKiller false (runc and crun write oom_control only to disable the killer)
    and swappiness 2**64-1 (runc: `int64(*MemorySwappiness) == -1` is not set);
    a group left empty goes too. `res` itself is not changed."""
    out = dict(res)
    for key, fields in ZERO_IS_UNSET.items():
        group = res.get(key)
        if not isinstance(group, dict):
            continue
        kept = {k: v for k, v in group.items() if not (k in fields and v == 0)}
        if key == "memory":
            if kept.get("disableOOMKiller") is False:
                del kept["disableOOMKiller"]
            if kept.get("swappiness") == SWAPPINESS_UNSET:
                del kept["swappiness"]
        if key == "blockIO" and kept.get("weightDevice"):
            devs = []
            for d in kept["weightDevice"]:
                d = {k: v for k, v in d.items() if not (k in ("weight", "leafWeight") and v == 0)}
                if d.get("weight") is not None or d.get("leafWeight") is not None:
                    devs.append(d)
            kept["weightDevice"] = devs
        kept = {k: v for k, v in kept.items() if v is not None and v != []}
        if kept:
            out[key] = kept
        else:
            del out[key]
    return out
