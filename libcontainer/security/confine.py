"""The process's confinement beyond credentials, planned as ops: LSM labels (refused with a
clear reason), linux.personality, process.ioPriority, process.scheduler, linux.memoryPolicy,
process.execCPUAffinity and linux.seccomp.

`prepare` checks all of it before anything runs, so a bad config leaves nothing behind;
process.plan then places the ops: `add_early` before the uid and capabilities change (the
steps that need root: I/O class RT, negative nice, real-time policies), `add_affinity` first
of all and just before the filter, `add_seccomp` as late as possible.

Without no_new_privs, loading a filter needs CAP_SYS_ADMIN. runc loads it before the
privilege drop, and then still runs its own setup under it; but an allowlist written before
Linux 5.x lacks the syscalls this runtime's setup uses (openat2 to resolve process.cwd,
faccessat2, close_range…), and the container would fail to start. Here the filter is loaded
just as late as with no_new_privs: the CAPS op keeps CAP_SYS_ADMIN (`hold_caps`) until the
filter is in, and a second CAPS op right after it sets the config's sets. After the filter
the runtime only calls capset and prctl, which every allowlist has.
"""
from __future__ import annotations

import struct

from .. import ops as P
from ..errors import ConfigError
from ..spec import MAX_NODE, id_list
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
# set_mempolicy(2): <linux/mempolicy.h>; in the order of features-linux.md
MPOL_MODES = {"MPOL_DEFAULT": 0, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
              "MPOL_WEIGHTED_INTERLEAVE": 6, "MPOL_PREFERRED": 1, "MPOL_PREFERRED_MANY": 5,
              "MPOL_LOCAL": 4}
MPOL_FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14,
              "MPOL_F_STATIC_NODES": 1 << 15}
MPOL_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
MPOL_NEED_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                   "MPOL_PREFERRED_MANY")
CPUS_ONLINE = "/sys/devices/system/cpu/online"
NODES_ONLINE = "/sys/devices/system/node/online"
CAP_SYS_ADMIN = 21


class Confinement:
    """What prepare() decided; the ops are added by process.plan in the right places."""

    def __init__(self) -> None:
        self.early: list = []     # (label, kind, kwargs) before the privilege drop
        self.seccomp = None       # (Profile, bpf bytes) or None
        self.seccomp_early = False  # CAP_SYS_ADMIN is held until the filter is loaded
        self.final_caps: dict = {}  # the CAPS op's fields once the filter is loaded
        self.affinity: list = []  # execCPUAffinity: (label, kwargs) of initial, final or None


def prepare(spec, proc, warn=None, for_exec: bool = False) -> Confinement:
    """`for_exec`: the process is started by `exec`, the only one execCPUAffinity is for."""
    conf = Confinement()
    lsm.check(proc)
    lx = spec.linux
    if lx.mount_label:
        lsm.check_mount_label(lx.mount_label, warn)
    if lx.personality is not None:
        conf.early.append(_personality(lx.personality))
    if proc.io_priority is not None:
        conf.early.append(_ioprio(proc.io_priority))
    if proc.scheduler is not None:
        conf.early.append(_scheduler(proc.scheduler))
    if lx.memory_policy is not None:
        conf.early.append(_mempolicy(lx.memory_policy))
    if for_exec and proc.exec_cpu_affinity is not None:
        conf.affinity = _affinity(proc.exec_cpu_affinity)
    if lx.seccomp is not None:
        conf.seccomp = _compiled(lx.seccomp)
    return conf


# A warm process compiles a profile once (libseccomp takes ~30 ms for the default one):
# by the profile object's identity (a cached Spec's), else by its canonical JSON
_by_id: dict = {}
_by_text: dict = {}
_CACHE_MAX = 16


def _compiled(raw: dict) -> tuple:
    hit = _by_id.get(id(raw))
    if hit is not None and hit[0] is raw:
        return hit[1]
    import json

    from . import seccomp  # libseccomp and cffi only for configs that ask

    text = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    out = _by_text.get(text)
    if out is None:
        prof = seccomp.parse(raw)
        out = (prof, seccomp.compile(prof))
        if len(_by_text) >= _CACHE_MAX:
            _by_text.pop(next(iter(_by_text)))
        _by_text[text] = out
    if len(_by_id) >= _CACHE_MAX:
        _by_id.pop(next(iter(_by_id)))
    _by_id[id(raw)] = (raw, out)  # the reference keeps the id from being reused
    return out


def add_early(conf: Confinement, plan, masks: dict, no_new_privs: bool) -> dict:
    """Adds the steps that need root; returns the capability masks the CAPS op must set
    until the filter is loaded (`masks` itself when nothing must be held)."""
    for label, kind, kw in conf.early:
        plan.add(label, kind, **kw)
    if conf.seccomp and not no_new_privs and not masks["effective"] >> CAP_SYS_ADMIN & 1:
        conf.seccomp_early = True
        conf.final_caps = {"b": masks["effective"], "c": masks["permitted"],
                           "d": masks["inheritable"], "e": masks["ambient"]}
        admin = 1 << CAP_SYS_ADMIN
        # no ambient set yet: the final CAPS op raises it
        return dict(masks, effective=masks["effective"] | admin,
                    permitted=masks["permitted"] | admin, ambient=0)
    return masks


def add_affinity(conf: Confinement, plan) -> None:
    """Called once the plan is complete. `initial` becomes ops[0], which the shim runs before
    it even sets up the namespaces; `final` goes right before the exec, or before the
    seccomp filter if there is one: a filter may refuse sched_setaffinity."""
    if not conf.affinity:
        return
    initial, final = conf.affinity
    if final:
        kinds = [o[0] for o in plan.ops]
        at = kinds.index(P.SECCOMP) if P.SECCOMP in kinds else kinds.index(P.EXEC)
        plan.ops.insert(at, P.op(P.AFFINITY, **final[1]))
        plan.labels.insert(at, final[0])
    if initial:
        plan.ops.insert(0, P.op(P.AFFINITY, **initial[1]))
        plan.labels.insert(0, initial[0])


def add_seccomp(conf: Confinement, plan, before_start: bool) -> None:
    """Called twice by process.plan: before waiting for `start` (before_start=True) and right
    before the exec. A notifying filter is loaded before the wait so that its listener
    reaches the parent while the parent still listens; any other as late as possible, so
    that the fewest syscalls run under it."""
    if not conf.seccomp:
        return
    if before_start == conf.seccomp[0].notify:
        _add_seccomp(conf, plan)
        if conf.seccomp_early:
            plan.add("process.capabilities: setting the capability sets (CAP_SYS_ADMIN was "
                     "held to load the seccomp filter)", P.CAPS, **conf.final_caps)


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


# ---- memoryPolicy, execCPUAffinity --------------------------------------------------------

def _mask(ids: tuple) -> bytes:
    """The kernel's bitmap of `ids`, in whole unsigned longs (what set_mempolicy reads)."""
    bits = 0
    for i in ids:
        bits |= 1 << i
    return bits.to_bytes(8 * (max(ids) // 64 + 1), "little")


def list_text(ids: tuple) -> str:
    """(0, 1, 2, 3, 7) → "0-3,7", as the kernel prints lists."""
    out = []
    for i in ids:
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def _online(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _mempolicy(raw: dict):
    f = "linux.memoryPolicy"
    mode = _choice(raw, "mode", f, MPOL_MODES)
    text = raw.get("nodes")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ConfigError(f"{f}.nodes", 'must be a string like "0-3,7"')
    nodes = id_list(text, f"{f}.nodes", "node", MAX_NODE) if text.strip() else ()
    # the spec's rules (set_mempolicy(2)); MPOL_PREFERRED takes none (local) or some
    if mode in MPOL_NO_NODES and nodes:
        raise ConfigError(f"{f}.nodes", f"{mode} takes no nodes, got {text!r}")
    if mode in MPOL_NEED_NODES and not nodes:
        raise ConfigError(f"{f}.nodes", f"{mode} needs at least one node")
    names = raw.get("flags") or []
    if not isinstance(names, list):
        raise ConfigError(f"{f}.flags", "must be an array")
    flags = 0
    for i, name in enumerate(names):
        if name not in MPOL_FLAGS:
            raise ConfigError(f"{f}.flags[{i}]", f"unknown flag {name!r} (want one of "
                                                 f"{', '.join(MPOL_FLAGS)})")
        flags |= MPOL_FLAGS[name]
    both = MPOL_FLAGS["MPOL_F_STATIC_NODES"] | MPOL_FLAGS["MPOL_F_RELATIVE_NODES"]
    if flags & both == both:
        raise ConfigError(f"{f}.flags", "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES "
                                        "exclude each other")
    kw = {"a": MPOL_MODES[mode] | flags}
    what = mode
    if nodes:
        # maxnode: the kernel reads one bit less than it is told (set_mempolicy(2))
        kw.update(data=_mask(nodes), b=64 * (max(nodes) // 64 + 1) + 1)
        what += f" on nodes {list_text(nodes)}"
    if names:
        what += f" with {', '.join(names)}"
    # the kernel's bare EINVAL says nothing: say what it checks
    hints = []
    if nodes:
        hints.append("the nodes must be online and in the cgroup's cpuset.mems; online "
                     f"here: {_online(NODES_ONLINE) or 'none'}")
    if "MPOL_F_NUMA_BALANCING" in names:
        hints.append("MPOL_F_NUMA_BALANCING goes only with MPOL_BIND or, on newer kernels, "
                     "MPOL_PREFERRED_MANY")
    label = f"{f}: setting {what}" + (f" ({'; '.join(hints)})" if hints else "")
    return (label, P.MEMPOLICY, kw)


def _affinity(aff) -> list:
    f = "process.execCPUAffinity"
    text = _online(CPUS_ONLINE)
    online = set(id_list(text, CPUS_ONLINE, "CPU", 1 << 20)) if text else None
    out = []
    for key, what in (("initial", "running the setup on CPUs"),
                      ("final", "pinning the process to CPUs")):
        cpus = getattr(aff, key)
        if not cpus:
            out.append(None)
            continue
        missing = [c for c in cpus if online is not None and c not in online]
        if missing:
            raise ConfigError(f"{f}.{key}", f"CPU {missing[0]} is not online on this host "
                                            f"(online: {text})")
        where = "the runner's cpuset" if key == "initial" else "the container's cpuset.cpus"
        out.append((f"{f}.{key}: {what} {list_text(cpus)} (at least one must be in {where})",
                    {"data": _mask(cpus)}))
    return out
