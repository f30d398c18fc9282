"""Type and range checks of `linux.resources`, before anything is created.

The spec keeps resources as raw (JSON-typed) data; this is where they are checked. Every
error names the field (``linux.resources.memory.limit: must be an integer``). Checks that
depend on the host (a controller present, a value the kernel accepts) happen when the value
is written, and name the file too.
"""
from __future__ import annotations

from ..errors import ConfigError

BASE = "linux.resources"
U16, U32, U64, I64 = (0, 0xFFFF), (0, 0xFFFFFFFF), (0, 2**64 - 1), (-2**63, 2**63 - 1)

SHARES = (2, 262144)  # the kernel's MIN_SHARES, MAX_SHARES (0 means not set)

_JTYPES = {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}


def _int(o: dict, key: str, path: str, rng=I64, required: bool = False):
    v = o.get(key)
    field = f"{path}.{key}"
    if v is None:
        if required:
            raise ConfigError(field, "is required")
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(field, f"must be an integer, not {v!r}")
    if not rng[0] <= v <= rng[1]:
        raise ConfigError(field, f"{v} is out of range ({rng[0]} .. {rng[1]})")
    return v


def _typed(o: dict, key: str, path: str, typ, required: bool = False):
    v = o.get(key)
    if v is None:
        if required:
            raise ConfigError(f"{path}.{key}", "is required")
        return None
    if not isinstance(v, typ):
        raise ConfigError(f"{path}.{key}", f"must be {_JTYPES[typ]}")
    return v


def _objects(o: dict, key: str, path: str) -> list:
    items = _typed(o, key, path, list) or []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}.{key}[{i}]", "must be an object")
    return items


def cpu_list(value: str, field: str) -> None:
    """`0-3,7`: what cpuset.cpus and cpuset.mems accept."""
    if value == "":
        return
    for part in value.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
            raise ConfigError(field, f"{value!r} is not a list like 0-3,7")


def page_size(value: str, field: str) -> int:
    """`2MB` → 2097152 (base 1024, as the spec says)."""
    num, unit = value[:-2], value[-2:]
    mult = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}.get(unit)
    if mult is None or not num.isdigit() or num.startswith("0"):
        raise ConfigError(field, f"{value!r} is not a page size like 2MB, 64KB or 1GB")
    return int(num) * mult


def resources(res: dict, base: str = BASE) -> dict:
    """Check `res` (a linux.resources object); returns it unchanged."""
    if not isinstance(res, dict):
        raise ConfigError(base, "must be an object")
    mem = _typed(res, "memory", base, dict)
    if mem is not None:
        p = f"{base}.memory"
        for k in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
            v = _int(mem, k, p)
            if v is not None and v < -1:
                raise ConfigError(f"{p}.{k}", f"{v}: want a number of bytes or -1 (unlimited)")
        sw = _int(mem, "swappiness", p, U64)
        # 2**64-1 is -1 through Go's uint64: runc reads it as "not set" (unset.strip)
        if sw is not None and 100 < sw < U64[1]:
            raise ConfigError(f"{p}.swappiness", f"{sw} is out of range (0 .. 100)")
        for k in ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"):
            _typed(mem, k, p, bool)
        lim, swap = mem.get("limit"), mem.get("swap")
        if lim and swap and lim > 0 and swap > 0 and swap < lim:
            raise ConfigError(f"{p}.swap", f"{swap} is below memory.limit {lim} "
                              "(swap is the limit of memory + swap)")
    cpu = _typed(res, "cpu", base, dict)
    if cpu is not None:
        p = f"{base}.cpu"
        for k in ("shares", "period", "burst", "realtimePeriod"):
            _int(cpu, k, p, U64)
        for k in ("quota", "realtimeRuntime", "idle"):
            _int(cpu, k, p)
        # the kernel clamps cpu.shares into [2, 262144] silently (v1), and the v2 weight
        # conversion is only defined there: like runc, refuse what would not be what was asked
        sh = cpu.get("shares")
        if sh and not SHARES[0] <= sh <= SHARES[1]:
            bound = ("minimum", SHARES[0]) if sh < SHARES[0] else ("maximum", SHARES[1])
            raise ConfigError(f"{p}.shares", f"{sh}: the %s allowed cpu-shares is %d" % bound)
        q, b = cpu.get("quota"), cpu.get("burst")
        if q is not None and b is not None and q > 0 and b > q:
            raise ConfigError(f"{p}.burst", f"{b} is larger than quota {q}")
        if cpu.get("idle") not in (None, 0, 1):
            raise ConfigError(f"{p}.idle", f"{cpu['idle']}: want 0 or 1")
        for k in ("cpus", "mems"):
            v = _typed(cpu, k, p, str)
            if v is not None:
                cpu_list(v, f"{p}.{k}")
    pids = _typed(res, "pids", base, dict)
    if pids is not None:
        v = _int(pids, "limit", f"{base}.pids", required=True)
        if v < -1:
            raise ConfigError(f"{base}.pids.limit", f"{v}: want a number or -1 (unlimited)")
    bio = _typed(res, "blockIO", base, dict)
    if bio is not None:
        p = f"{base}.blockIO"
        _int(bio, "weight", p, U16)
        _int(bio, "leafWeight", p, U16)
        for i, d in enumerate(_objects(bio, "weightDevice", p)):
            dp = f"{p}.weightDevice[{i}]"
            _int(d, "major", dp, I64, True)
            _int(d, "minor", dp, I64, True)
            if _int(d, "weight", dp, U16) is None and _int(d, "leafWeight", dp, U16) is None:
                raise ConfigError(dp, "needs weight or leafWeight")
        for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                    "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
            for i, d in enumerate(_objects(bio, key, p)):
                dp = f"{p}.{key}[{i}]"
                _int(d, "major", dp, I64, True)
                _int(d, "minor", dp, I64, True)
                _int(d, "rate", dp, U64, True)
    for i, h in enumerate(_objects(res, "hugepageLimits", base)):
        hp = f"{base}.hugepageLimits[{i}]"
        page_size(_typed(h, "pageSize", hp, str, True), f"{hp}.pageSize")
        _int(h, "limit", hp, U64, True)
    net = _typed(res, "network", base, dict)
    if net is not None:
        p = f"{base}.network"
        _int(net, "classID", p, U32)
        for i, d in enumerate(_objects(net, "priorities", p)):
            dp = f"{p}.priorities[{i}]"
            name = _typed(d, "name", dp, str, True)
            if not name or "/" in name or " " in name:
                raise ConfigError(f"{dp}.name", f"{name!r} is not an interface name")
            _int(d, "priority", dp, U32, True)
    rdma = _typed(res, "rdma", base, dict)
    if rdma is not None:
        for dev, lim in rdma.items():
            dp = f"{base}.rdma.{dev}"
            if not dev or " " in dev or "\n" in dev:
                raise ConfigError(dp, "is not a device name")
            if not isinstance(lim, dict):
                raise ConfigError(dp, "must be an object")
            if _int(lim, "hcaHandles", dp, U32) is None and _int(lim, "hcaObjects", dp, U32) is None:
                raise ConfigError(dp, "needs hcaHandles or hcaObjects")
    uni = _typed(res, "unified", base, dict)
    if uni is not None:
        for k, v in uni.items():
            unified_key(k, f"{base}.unified.{k}")
            if not isinstance(v, str):
                raise ConfigError(f"{base}.unified.{k}", "must be a string")
    for i, d in enumerate(_objects(res, "devices", base)):
        dp = f"{base}.devices[{i}]"
        _typed(d, "allow", dp, bool, True)
        t = _typed(d, "type", dp, str)
        if t not in (None, "a", "c", "b"):
            raise ConfigError(f"{dp}.type", f"unknown device type {t!r} (want a, c or b)")
        for k in ("major", "minor"):
            v = _int(d, k, dp)
            if v is not None and v < -1:
                raise ConfigError(f"{dp}.{k}", f"{v}: want a number or -1 (all)")
        acc = _typed(d, "access", dp, str)
        if acc is not None and (not acc or set(acc) - set("rwm")):
            raise ConfigError(f"{dp}.access", f"{acc!r}: want a combination of r, w and m")
    return res


# Files the runtime itself manages: writing them through `unified` would break it.
_RESERVED = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.kill",
             "cgroup.freeze", "cgroup.type")


def unified_key(key: str, field: str) -> str:
    """A file name in the cgroup directory, `<controller>.<name>`; returns the controller."""
    ctrl, dot, rest = key.partition(".")
    if (not dot or not ctrl or not rest or "/" in key or key.startswith(".")
            or not all(c.isalnum() or c in "._-" for c in key)):
        raise ConfigError(field, "is not a cgroup v2 file name like memory.high")
    if key in _RESERVED:
        raise ConfigError(field, "is managed by the runtime and cannot be set here")
    return ctrl
