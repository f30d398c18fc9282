"""A container's owner: stored as the creating uid, shown as runc's `list` shows it."""
from __future__ import annotations

import os


def owner() -> str:
    """The owner recorded in a new container's state: this process's effective uid."""
    return str(os.geteuid())


def owner_name(uid: str, known: dict | None = None) -> str:
    """The stored owner uid as runc's list prints it: the user's name, "#uid" without one.
    (pwd is imported only here: `state` and `list` need it, a run does not.) `known`: names
    looked up already, uid → name, filled here (a `list` of a thousand containers of one
    owner asks the user database once, not a thousand times)."""
    if known is not None and uid in known:
        return known[uid]
    if not uid.isdigit():
        return uid
    import pwd

    try:
        name = pwd.getpwuid(int(uid)).pw_name
    except KeyError:
        name = "#" + uid
    if known is not None:
        known[uid] = name
    return name
