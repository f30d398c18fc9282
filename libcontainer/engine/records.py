"""Container records on disk: DATA/containers/<id>/config.v2.json (the inspect document,
written atomically), and the helpers every engine module shares (ids, names, times)."""
from __future__ import annotations

import json
import os
import re
import secrets
import time

from .errors import BadRequest

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"


def new_id() -> str:
    return secrets.token_hex(32)


def now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def parse_time(text: str) -> float:
    """RFC 3339 (nanoseconds allowed) → epoch seconds; 0 for docker's zero time."""
    if not text or text.startswith("0001-"):
        return 0.0
    import datetime

    main, _, frac = text.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac[:9]) if frac else 0.0)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadRequest(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


_ADJ = ["brave", "calm", "eager", "fond", "keen", "lucid", "merry", "nifty", "quirky", "vivid"]
_NOUN = ["turing", "hopper", "lovelace", "knuth", "ritchie", "thompson", "torvalds", "wozniak"]


def random_name() -> str:
    return f"{secrets.choice(_ADJ)}_{secrets.choice(_NOUN)}{secrets.randbelow(1000)}"


def write_json(path: str, obj, sync: bool = True) -> None:
    """Atomically (a reader or a crash sees the old file or the new one); `sync=False` for
    marks whose loss at a power cut the next start tolerates (it is not lost to a daemon
    crash: the page cache has it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.rename(tmp, path)


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
