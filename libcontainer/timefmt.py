"""Times as the state shows them: as Go's time.Time marshals (runc's `created`)."""
from __future__ import annotations

import time


def rfc3339nano(ns: int) -> str:
    """A UTC time as Go's time.Time marshals: RFC 3339, nanoseconds without trailing zeros."""
    secs, frac = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"
