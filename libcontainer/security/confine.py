"""The process's confinement beyond credentials, planned as ops: LSM labels (refused with a
clear reason), linux.personality, process.ioPriority, process.scheduler and linux.seccomp.

`prepare` checks all of it before anything runs, so a bad config leaves nothing behind;
process.plan then places the ops: `add_early` before the uid and capabilities change (the
steps that need root: I/O class RT, negative nice, real-time policies, and seccomp when it
must be loaded while CAP_SYS_ADMIN is still held), `add_seccomp` as late as possible.
"""
from __future__ import annotations

import struct

from .. import plan as P
from ..errors import ConfigError
from . import lsm

PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
IOPRIO_CLASS_SHIFT = 13
SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
               "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
               "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
CAP_SYS_ADMIN = 21


class Confinement:
    """What prepare() decided; the ops are added by process.plan in the right places."""

    def __init__(self) -> None:
        self.early: list = []     # (label, kind, kwargs) before the privilege drop
        self.seccomp = None       # (Profile, bpf bytes) or None
        self.seccomp_early = False


def prepare(spec, proc, warn=None) -> Confinement:
    conf = Confinement()
    lsm.check(proc)
    lx = spec.linux
    if lx.personality is not None:
        conf.early.append(_personality(lx.personality))
    if proc.io_priority is not None:
        conf.early.append(_ioprio(proc.io_priority))
    if proc.scheduler is not None:
        conf.early.append(_scheduler(proc.scheduler))
    if lx.seccomp is not None:
        from . import seccomp  # libseccomp and cffi only for configs that ask

        prof = seccomp.parse(lx.seccomp)
        conf.seccomp = (prof, seccomp.compile(prof))
    return conf


def add_early(conf: Confinement, plan, effective_caps: int, no_new_privs: bool) -> None:
    for label, kind, kw in conf.early:
        plan.add(label, kind, **kw)
    if conf.seccomp and not no_new_privs and not effective_caps >> CAP_SYS_ADMIN & 1:
        # without no_new_privs loading a filter needs CAP_SYS_ADMIN: load it while the
        # process still has it, as runc does (the rest of the setup then runs under it)
        conf.seccomp_early = True
        _add_seccomp(conf, plan)


def add_seccomp(conf: Confinement, plan, before_start: bool) -> None:
    """Called twice by process.plan: before waiting for `start` (before_start=True) and right
    before the exec. A notifying filter is loaded before the wait so that its listener
    reaches the parent while the parent still listens; any other as late as possible, so
    that the fewest syscalls run under it."""
    if not conf.seccomp or conf.seccomp_early:
        return
    if before_start == conf.seccomp[0].notify:
        _add_seccomp(conf, plan)


def _add_seccomp(conf: Confinement, plan) -> None:
    from . import seccomp

    seccomp.plan_op(plan, *conf.seccomp)


# ---- personality, ioPriority, scheduler ----------------------------------------------------

def _personality(raw: dict):
    f = "linux.personality"
    domain = raw.get("domain")
    if domain is None:
        raise ConfigError(f"{f}.domain", "is required")
    if domain not in PERSONALITY_DOMAINS:
        raise ConfigError(f"{f}.domain", f"unknown domain {domain!r} (want LINUX or LINUX32)")
    flags = raw.get("flags") or []
    if not isinstance(flags, list):
        raise ConfigError(f"{f}.flags", "must be an array")
    if flags:
        raise ConfigError(f"{f}.flags[0]", f"unsupported flag {flags[0]!r}: the spec defines "
                                           "no personality flags")
    return (f"{f}: setting the {domain} execution domain", P.PERSONALITY,
            {"a": PERSONALITY_DOMAINS[domain]})


def _int(raw: dict, key: str, field: str, lo: int, hi: int, required=False, default=0) -> int:
    v = raw.get(key)
    if v is None:
        if required:
            raise ConfigError(f"{field}.{key}", "is required")
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{field}.{key}", "must be an integer")
    if not lo <= v <= hi:
        raise ConfigError(f"{field}.{key}", f"{v} is outside {lo}..{hi}")
    return v


def _choice(raw: dict, key: str, field: str, table: dict) -> str:
    v = raw.get(key)
    if v is None:
        raise ConfigError(f"{field}.{key}", "is required")
    if v not in table:
        raise ConfigError(f"{field}.{key}", f"unknown {key} {v!r} (want one of "
                                            f"{', '.join(table)})")
    return v


def _ioprio(raw: dict):
    f = "process.ioPriority"
    cls = _choice(raw, "class", f, IOPRIO_CLASSES)
    prio = _int(raw, "priority", f, 0, 7, required=True)
    value = IOPRIO_CLASSES[cls] << IOPRIO_CLASS_SHIFT | prio
    return (f"{f}: setting {cls} priority {prio}", P.IOPRIO, {"a": value})


def _scheduler(raw: dict):
    f = "process.scheduler"
    policy = _choice(raw, "policy", f, SCHED_POLICIES)
    if policy == "SCHED_ISO":
        raise ConfigError(f"{f}.policy", "SCHED_ISO is not implemented by Linux")
    nice = _int(raw, "nice", f, -20, 19)
    realtime = policy in ("SCHED_FIFO", "SCHED_RR")
    prio = _int(raw, "priority", f, 1 if realtime else 0, 99 if realtime else 0,
                required=realtime)
    u64 = (1 << 64) - 1
    runtime, deadline, period = (_int(raw, k, f, 0, u64) for k in ("runtime", "deadline", "period"))
    if policy != "SCHED_DEADLINE" and (runtime or deadline or period):
        raise ConfigError(f, "runtime, deadline and period are only for SCHED_DEADLINE")
    flags = 0
    names = raw.get("flags") or []
    if not isinstance(names, list):
        raise ConfigError(f"{f}.flags", "must be an array")
    for i, name in enumerate(names):
        if name not in SCHED_FLAGS:
            raise ConfigError(f"{f}.flags[{i}]", f"unknown flag {name!r}")
        flags |= SCHED_FLAGS[name]
    # struct sched_attr (SCHED_ATTR_SIZE_VER1: with the utilization clamps, left at 0)
    attr = struct.pack("=IIQiIQQQII", 56, SCHED_POLICIES[policy], flags, nice, prio,
                       runtime, deadline, period, 0, 0)
    label = f"{f}: setting {policy} (nice {nice}, priority {prio})"
    if realtime:
        label += (" (a real-time policy also needs real-time time granted to the container's "
                  "cgroup where the kernel groups it: linux.resources.cpu.realtimeRuntime)")
    return (label, P.SCHED, {"data": attr})
