"""A container's owner: stored as the creating uid, shown as runc's `list` shows it."""
from __future__ import annotations

import os


def owner() -> str:
    """The owner recorded in a new container's state: this process's effective uid."""
    return str(os.geteuid())


def owner_name(uid: str) -> str:
    """The stored owner uid as runc's list prints it: the user's name, "#uid" without one.
    (pwd is imported only here: `state` and `list` need it, a run does not.)"""
    if not uid.isdigit():
        return uid
    import pwd

    try:
        return pwd.getpwuid(int(uid)).pw_name
    except KeyError:
        return "#" + uid
