"""What `--systemd-cgroup` asks systemd for: the unit's name and place, and the unit
properties `linux.resources` maps to — as runc 1.1 (libcontainer/cgroups/systemd) sends
them, so that `systemctl show` says the same for a container of either runtime.

Plain data, no D-Bus: each property is (name, (D-Bus signature, value)), the form jeepney
marshals for `a(sv)`. Hybrid and v1 hosts get systemd's v1 properties (MemoryLimit,
CPUShares, BlockIOWeight), pure v2 hosts the v2 ones (MemoryMax, CPUWeight, …). Whatever has
no property is still written to the cgroup files (the manager does both), and so is every
value that has one: systemd writes its own, and a `daemon-reload` writes the same again.
"""
from __future__ import annotations

import os

from ..errors import ConfigError
from . import v2

FIELD = "linux.cgroupsPath"
DEFAULT_PREFIX = "runner"   # runc's is "runc": runner-<id>.scope
CPU_PERIOD = 100000          # the kernel's default cfs period, µs (v1 and v2)
USEC_INFINITY = 2**64 - 1
U64_MAX = 2**64 - 1


def parse_path(cgroups_path: str, container_id: str) -> tuple:
    """linux.cgroupsPath in systemd's "slice:prefix:name" form → (slice, prefix, name); the
    slice "" means the default (system.slice, or user.slice rootless). Empty: the default
    unit, runner-<id>.scope."""
    if not cgroups_path:
        return "", DEFAULT_PREFIX, container_id
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise ConfigError(FIELD, f"expected \"slice:prefix:name\" with --systemd-cgroup "
                                 f"(e.g. \"system.slice:docker:1234\"), got {cgroups_path!r}")
    slice_, prefix, name = parts
    if slice_:
        expand_slice(slice_)
    for what, v in (("prefix", prefix), ("name", name)):
        if "/" in v or "\0" in v:
            raise ConfigError(FIELD, f"{cgroups_path!r}: the {what} {v!r} must not contain '/'")
    if not name:
        raise ConfigError(FIELD, f"{cgroups_path!r}: the name (after the last ':') is empty")
    return slice_, prefix, name


def expand_slice(slice_: str) -> str:
    """A slice's cgroup path, systemd's dash nesting: a-b.slice → /a.slice/a-b.slice."""
    suffix = ".slice"
    if len(slice_) < len(suffix) or not slice_.endswith(suffix) or "/" in slice_:
        raise ConfigError(FIELD, f"invalid slice name {slice_!r} (want NAME.slice, no '/')")
    base = slice_[:-len(suffix)]
    if base == "-":
        return "/"
    path, prefix = "", ""
    for comp in base.split("-"):
        if not comp:  # test--a.slice and -test.slice are not slices
            raise ConfigError(FIELD, f"invalid slice name {slice_!r} (empty part between dashes)")
        path += "/" + prefix + comp + suffix
        prefix += comp + "-"
    return path


def unit_name(prefix: str, name: str) -> str:
    """A scope unless the name is a slice (runc's getUnitName)."""
    if name.endswith(".slice"):
        return name
    return f"{prefix}-{name}.scope"


def range_to_bits(text: str, field: str) -> bytes:
    """A cpuset list ("0-2,7") → the bitmask systemd takes for AllowedCPUs and
    AllowedMemoryNodes: byte i holds CPUs 8i..8i+7, lowest bit first (systemd's
    cpu_set_from_dbus). runc 1.1.5 sends the bytes big-endian (wrong past CPU 7; fixed in
    later runc): this is the order systemd reads."""
    bits = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ConfigError(field, f"{text!r} is not a list of numbers and ranges") from None
        if a < 0 or b < a:
            raise ConfigError(field, f"{text!r}: invalid range {part!r}")
        for i in range(a, b + 1):
            bits |= 1 << i
    if not bits:
        raise ConfigError(field, f"{text!r}: empty set")
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def base_properties(unit: str, slice_: str, name: str, pid: int, mode: str) -> list:
    """What every unit gets (runc's Apply): description, place, delegation, the pid,
    accounting on (so that systemd makes the unit's cgroup in every controller it runs)."""
    props = [("Description", ("s", f"libcontainer container {name}"))]
    if unit.endswith(".slice"):
        props.append(("Wants", ("as", [slice_])))
    else:
        props += [("Slice", ("s", slice_)), ("Delegate", ("b", True))]
    if pid > 0:
        props.append(("PIDs", ("au", [pid])))
    props += [("MemoryAccounting", ("b", True)), ("CPUAccounting", ("b", True)),
              ("IOAccounting" if mode == "v2" else "BlockIOAccounting", ("b", True)),
              ("TasksAccounting", ("b", True)),
              ("DefaultDependencies", ("b", False))]
    return props


def _u64(v: int) -> int:
    return v & U64_MAX  # Go's uint64(-1): "infinity"


def _cpu_quota(props: list, quota, period, version: int) -> None:
    quota, period = quota or 0, period or 0
    if period and version >= 242:  # CPUQuotaPeriodUSec= since systemd 242
        props.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota or period:
        per_sec = USEC_INFINITY
        if quota > 0:
            # systemd keeps a percentage: round up to 10 ms per second, so that the
            # cgroup's own cfs_quota_us (written after) is what the config says
            per_sec = quota * 1000000 // (period or CPU_PERIOD)
            if per_sec % 10000:
                per_sec = (per_sec // 10000 + 1) * 10000
        props.append(("CPUQuotaPerSecUSec", ("t", per_sec)))


def _cpuset(props: list, cpu: dict, version: int) -> None:
    if version < 244:  # AllowedCPUs= and AllowedMemoryNodes= since systemd 244
        return
    if cpu.get("cpus"):
        props.append(("AllowedCPUs", ("ay", range_to_bits(cpu["cpus"],
                                                          "linux.resources.cpu.cpus"))))
    if cpu.get("mems"):
        props.append(("AllowedMemoryNodes", ("ay", range_to_bits(cpu["mems"],
                                                                 "linux.resources.cpu.mems"))))


def resource_properties(res: dict, mode: str, version: int, device_paths=(),
                        devices: bool = True) -> list:
    """linux.resources (validated) → unit properties, runc 1.1's genV1ResourcesProperties
    (mode "v1"/"hybrid") or genV2ResourcesProperties (mode "v2")."""
    props = device_properties(res, device_paths) if devices else []
    mem, cpu = res.get("memory") or {}, res.get("cpu") or {}
    pids = (res.get("pids") or {}).get("limit")
    if mode != "v2":
        if mem.get("limit"):
            props.append(("MemoryLimit", ("t", _u64(mem["limit"]))))
        if cpu.get("shares"):
            props.append(("CPUShares", ("t", cpu["shares"])))
        _cpu_quota(props, cpu.get("quota"), cpu.get("period"), version)
        weight = (res.get("blockIO") or {}).get("weight")
        if weight:
            props.append(("BlockIOWeight", ("t", weight)))
        if pids is not None and (pids > 0 or pids == -1):
            props.append(("TasksMax", ("t", _u64(pids))))
        _cpuset(props, cpu, version)
        return props
    if mem.get("limit"):
        props.append(("MemoryMax", ("t", _u64(mem["limit"]))))
    if mem.get("reservation"):
        props.append(("MemoryLow", ("t", _u64(mem["reservation"]))))
    swap = v2.swap_value(mem.get("swap"), mem.get("limit")) if mem else None
    if swap:
        props.append(("MemorySwapMax", ("t", _u64(swap))))
    if cpu.get("shares"):
        props.append(("CPUWeight", ("t", v2.shares_to_weight(cpu["shares"]))))
    _cpu_quota(props, cpu.get("quota"), cpu.get("period"), version)
    if pids is not None and (pids > 0 or pids == -1):
        props.append(("TasksMax", ("t", _u64(pids))))
    _cpuset(props, cpu, version)
    props += unified_properties(res.get("unified") or {}, version)
    return props


_MEMORY = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow", "memory.min": "MemoryMin",
           "memory.max": "MemoryMax", "memory.swap.max": "MemorySwapMax"}


def unified_properties(unified: dict, version: int) -> list:
    """linux.resources.unified keys systemd has a property for (runc's
    unifiedResToSystemdProps); the others go only to the files."""
    props: list = []
    for key, value in unified.items():
        field = f"linux.resources.unified.{key}"
        value = str(value).strip()

        def num(v: str) -> int:
            if v == "max":
                return U64_MAX
            try:
                return int(v)
            except ValueError:
                raise ConfigError(field, f"{value!r} is not a number or \"max\"") from None
        if key == "cpu.max":
            words = value.split()
            if not 1 <= len(words) <= 2:
                raise ConfigError(field, f"{value!r}: want \"QUOTA [PERIOD]\"")
            period = num(words[1]) if len(words) == 2 else CPU_PERIOD
            quota = 0 if words[0] == "max" else num(words[0])
            _cpu_quota(props, quota, period, version)
        elif key == "cpu.weight":
            props.append(("CPUWeight", ("t", num(value))))
        elif key in ("cpuset.cpus", "cpuset.mems") and version >= 244:
            props.append(("AllowedCPUs" if key == "cpuset.cpus" else "AllowedMemoryNodes",
                          ("ay", range_to_bits(value, field))))
        elif key in _MEMORY:
            props.append((_MEMORY[key], ("t", num(value))))
        elif key == "pids.max":
            props.append(("TasksMax", ("t", num(value))))
    return props


# ---- devices: DevicePolicy=strict and a DeviceAllow list (runc's generateDeviceProperties)

def device_properties(res: dict, device_paths=()) -> list:
    """The container's device rules as systemd can hold them: a strict allow-list. A list
    that allows by default is "auto" with no entries only when it allows everything;
    otherwise (systemd has no deny rules) strict and empty, and the cgroup's own rules,
    written after, are the real ones — as runc does."""
    from . import devices as dev

    emu = dev.Emulator()
    for r in dev.rules(res, device_paths):
        emu.apply(r)
    props = [("DevicePolicy", ("s", "strict")), ("DeviceAllow", ("a(ss)", []))]
    if emu.default_allow:
        if not emu.exceptions:
            return [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))]
        return props
    allow = []
    for (typ, major, minor), access in sorted(emu.exceptions.items(),
                                              key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        # runc's order: (major, minor, type)
        prefix = {"b": "block-", "c": "char-"}[typ]
        if major < 0:
            if minor >= 0:
                continue  # "*:n" has no systemd form; the cgroup's own rule covers it
            path = prefix + "*"
        elif minor < 0:
            group = _device_group(typ, major)
            if not group:
                continue
            path = prefix + group
        else:
            path = f"/dev/{'block' if typ == 'b' else 'char'}/{major}:{minor}"
            # runc 1.1.5 leaves out a node that neither /dev nor /sys shows
            if not (os.path.exists(path) or os.path.exists("/sys" + path)):
                continue
        allow.append((path, access))
    props.append(("DeviceAllow", ("a(ss)", allow)))
    return props


def _device_group(typ: str, major: int) -> str:
    """The /proc/devices name of a major number (DeviceAllow's "char-NAME" for n:*)."""
    want = "Block devices:" if typ == "b" else "Character devices:"
    current = ""
    try:
        with open("/proc/devices") as f:
            for line in f:
                line = line.strip()
                if line.endswith("devices:"):
                    current = line
                    continue
                if current != want or not line:
                    continue
                num, _, name = line.partition(" ")
                if num.isdigit() and int(num) == major:
                    return name.strip()
    except OSError:
        pass
    return ""


# ---- annotations: org.systemd.property.NAME=VALUE (runc's initSystemdProps) --------------

ANNOTATION = "org.systemd.property."
_KEYWORDS = {"boolean": "b", "byte": "y", "int16": "n", "uint16": "q", "int32": "i",
             "uint32": "u", "int64": "x", "uint64": "t", "double": "d", "string": "s",
             "objectpath": "o"}
_INT_SIGS = "ynqiuxt"


def annotation_properties(annotations: dict) -> list:
    """Extra unit properties from the config's annotations, their values in GVariant text
    form as runc parses them ("uint64 10000000", "true", "'text'", "['a', 'b']"); a NAME
    ending in "Sec" (TimeoutStopSec) is sent as NAME in µs (TimeoutStopUSec), as runc does.
    podman sets org.systemd.property.TimeoutStopUSec this way."""
    props = []
    for key, text in sorted((annotations or {}).items()):
        if not key.startswith(ANNOTATION):
            continue
        name = key[len(ANNOTATION):]
        field = f"annotations.{key}"
        if len(name) < 3 or not name.isascii() or not name.isalpha():
            raise ConfigError(field, f"{name!r} is not a property name (3 or more letters)")
        sig, value = parse_gvariant(str(text), field)
        if name.endswith("Sec") and name[-4].islower():
            if sig not in _INT_SIGS + "d":
                raise ConfigError(field, f"{text!r}: {name} needs a number")
            name, sig, value = name[:-3] + "USec", "t", int(value * 1000000)
        props.append((name, (sig, value)))
    return props


def parse_gvariant(text: str, field: str) -> tuple:
    """(signature, value) of a GVariant text-form value: the subset unit properties use."""
    t = text.strip()
    sig = ""
    if t.startswith("@"):
        sig, _, t = t[1:].partition(" ")
        t = t.strip()
    else:
        word, _, rest = t.partition(" ")
        if word in _KEYWORDS and rest:
            sig, t = _KEYWORDS[word], rest.strip()
    try:
        if t.startswith("["):
            if not t.endswith("]"):
                raise ValueError
            inner = sig[1:] if sig.startswith("a") else ""
            items = [_scalar(x, inner, field) for x in _split(t[1:-1])]
            inner = inner or (items[0][0] if items else "s")
            if any(s != inner for s, _ in items):
                raise ValueError
            return "a" + inner, [v for _, v in items]
        return _scalar(t, sig, field)
    except ValueError:
        raise ConfigError(field, f"{text!r} is not a value in GVariant text form") from None


def _split(body: str) -> list:
    out, cur, quote = [], "", ""
    for ch in body:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            cur += ch
        elif ch == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _scalar(t: str, sig: str, field: str) -> tuple:
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        if sig not in ("", "s", "o"):
            raise ValueError
        return sig or "s", t[1:-1]
    if t in ("true", "false"):
        if sig not in ("", "b"):
            raise ValueError
        return "b", t == "true"
    if sig == "d" or (not sig and any(c in t for c in ".eE") and not t.startswith("0x")):
        return "d", float(t)
    n = int(t, 0)
    sig = sig or "i"
    if sig not in _INT_SIGS:
        raise ValueError
    return sig, n
