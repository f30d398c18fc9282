"""Capability names → bit masks, checked against what kernels define and what this one has."""
from __future__ import annotations

# python-prctl's table stops at CAP_BPF/CAP_PERFMON (39); newer kernels define more.
_NEWER_THAN_PRCTL = {"checkpoint_restore": 40}

_NOT_CAPS = {"CAP_EFFECTIVE", "CAP_INHERITABLE", "CAP_PERMITTED", "CAP_LAST_CAP"}

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

_names: dict | None = None
_last: int | None = None


def known_names() -> dict:
    """Every capability name any kernel defines, lower-case without CAP_, → number."""
    global _names
    if _names is None:
        # python-prctl's C module holds the table; its Python half (`import prctl`) costs
        # ~3 ms of start-up building classes we do not use
        import _prctl

        _names = {n[4:].lower(): getattr(_prctl, n) for n in dir(_prctl)
                  if n.startswith("CAP_") and n not in _NOT_CAPS}
        _names.update(_NEWER_THAN_PRCTL)
    return _names


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
        warn("process.capabilities.ambient: "
             f"{', '.join(names_of(masks['ambient'] & ~ambient_ok))} is not in both the "
             "permitted and inheritable sets, which an ambient capability needs; skipped")
        masks["ambient"] &= ambient_ok
    return masks
