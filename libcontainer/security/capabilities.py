"""Capability names → bit masks, checked against what kernels define and what this one has."""
from __future__ import annotations

# The kernel's numbers (include/uapi/linux/capability.h): an ABI, never renumbered, only
# added to (tests/unit/test_capabilities_table.py compares with the installed header).
NAMES = {
    "chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4,
    "kill": 5, "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9,
    "net_bind_service": 10, "net_broadcast": 11, "net_admin": 12, "net_raw": 13,
    "ipc_lock": 14, "ipc_owner": 15, "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18,
    "sys_ptrace": 19, "sys_pacct": 20, "sys_admin": 21, "sys_boot": 22, "sys_nice": 23,
    "sys_resource": 24, "sys_time": 25, "sys_tty_config": 26, "mknod": 27, "lease": 28,
    "audit_write": 29, "audit_control": 30, "setfcap": 31, "mac_override": 32,
    "mac_admin": 33, "syslog": 34, "wake_alarm": 35, "block_suspend": 36, "audit_read": 37,
    "perfmon": 38, "bpf": 39, "checkpoint_restore": 40,
}

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

_last: int | None = None


def known_names() -> dict:
    """Every capability name any kernel defines, lower-case without CAP_, → number."""
    return NAMES


def last_cap() -> int:
    global _last
    if _last is None:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            _last = int(f.read())
    return _last


def mask(names, field: str, warn=None) -> int:
    """OR the bits of `names` (``CAP_CHOWN`` …). A name that cannot be mapped — no kernel
    defines it, or it is newer than the running kernel — is skipped with a warning:
    config.md (1.3) says such a capability MUST be logged and runtimes SHOULD NOT fail,
    and runc and crun warn and run."""
    table = known_names()
    top = last_cap()
    bits = 0
    for i, name in enumerate(names):
        key = name.lower()
        if key.startswith("cap_"):
            key = key[4:]
        num = table.get(key)
        if num is None:
            (warn or _warn)(f"{field}[{i}]: unknown capability {name!r}; skipped")
            continue
        if num > top:
            (warn or _warn)(f"{field}[{i}]: {name} is not supported by this kernel; skipped")
            continue
        bits |= 1 << num
    return bits


def all_caps() -> int:
    return (1 << (last_cap() + 1)) - 1


def names_of(bits: int) -> list:
    table = known_names()
    return sorted("CAP_" + n.upper() for n, v in table.items() if bits >> v & 1)


def _warn(msg: str) -> None:
    from ..log import warning

    warning(msg)


def own_sets() -> dict:
    """This process's capability sets ("CapPrm", "CapBnd", …) as masks, from one read."""
    from ..fileio import read

    out = {}
    for line in read("/proc/self/status").split(b"\n"):
        if line.startswith(b"Cap"):
            key, _, value = line.partition(b":")
            out[key.decode()] = int(value, 16)
    return out


def plan_masks(caps, in_userns: bool, warn=None) -> dict:
    """The five sets of process.capabilities as masks, ready for the child.

    A capability this runtime cannot grant (not in its own permitted and bounding sets, when
    no user namespace gives a fresh full set) is dropped with a warning, as the spec asks
    ("SHOULD NOT fail"); so is an ambient one not in both permitted and inheritable, which
    the kernel would refuse to raise. Inheritable and ambient stay empty unless asked."""
    warn = warn or _warn
    masks = {}
    for name in SETS:
        names = getattr(caps, name) if caps else ()
        masks[name] = mask(names, f"process.capabilities.{name}", warn) if names else 0
    if not in_userns:
        own = own_sets()
        grantable = own.get("CapPrm", 0) & own.get("CapBnd", 0)
        for name in SETS:
            missing = masks[name] & ~grantable
            if missing:
                warn(f"process.capabilities.{name}: {', '.join(names_of(missing))} cannot be "
                     "granted: the runtime does not hold it; skipped")
                masks[name] &= grantable
    if masks["effective"] & ~masks["permitted"]:
        warn("process.capabilities.effective: "
             f"{', '.join(names_of(masks['effective'] & ~masks['permitted']))} is not in the "
             "permitted set, so it cannot be effective; skipped")
        masks["effective"] &= masks["permitted"]
    ambient_ok = masks["permitted"] & masks["inheritable"]
    if masks["ambient"] & ~ambient_ok:
        # runc's own `spec` asks for this (ambient without inheritable): runc 1.1 and crun
        # drop it without a word, so it is a debug remark, not a warning on every run
        from ..log import debug

        debug("process.capabilities.ambient: "
             f"{', '.join(names_of(masks['ambient'] & ~ambient_ok))} is not in both the "
             "permitted and inheritable sets, which an ambient capability needs; skipped")
        masks["ambient"] &= ambient_ok
    return masks
