"""Capability names → bit masks, checked against what kernels define and what this one has."""
from __future__ import annotations

import sys

from ..errors import ConfigError

# python-prctl's table stops at CAP_BPF/CAP_PERFMON (39); newer kernels define more.
_NEWER_THAN_PRCTL = {"checkpoint_restore": 40}

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

_names: dict | None = None
_last: int | None = None


def known_names() -> dict:
    """Every capability name any kernel defines, lower-case without CAP_, → number."""
    global _names
    if _names is None:
        import prctl  # python-prctl; imported only when a config names capabilities

        _names = {n: v for n, v in zip(prctl.ALL_CAP_NAMES, prctl.ALL_CAPS) if n != "last_cap"}
        _names.update(_NEWER_THAN_PRCTL)
    return _names


def last_cap() -> int:
    global _last
    if _last is None:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            _last = int(f.read())
    return _last


def mask(names, field: str, warn=None) -> int:
    """OR the bits of `names` (``CAP_CHOWN`` …). A name no kernel defines is an error; one
    newer than the running kernel is skipped with a warning, as runc does."""
    table = known_names()
    top = last_cap()
    bits = 0
    for i, name in enumerate(names):
        key = name.lower()
        if key.startswith("cap_"):
            key = key[4:]
        num = table.get(key)
        if num is None:
            raise ConfigError(f"{field}[{i}]", f"unknown capability {name!r}")
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
    sys.stderr.write(f"warning: {msg}\n")
