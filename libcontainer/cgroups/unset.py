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


def strip(res: dict) -> dict:
    """`res` (validated) without the fields that are 0 where 0 means not set, and without
    disableOOMKiller false (runc and crun write oom_control only to disable the killer);
    a group left empty goes too. `res` itself is not changed."""
    out = dict(res)
    for key, fields in ZERO_IS_UNSET.items():
        group = res.get(key)
        if not isinstance(group, dict):
            continue
        kept = {k: v for k, v in group.items() if not (k in fields and v == 0)}
        if key == "memory" and kept.get("disableOOMKiller") is False:
            del kept["disableOOMKiller"]
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
