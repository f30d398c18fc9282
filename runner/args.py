"""A small flag parser in runc's style (`--flag value`, `--flag=value`, `-f value`, boolean
flags, flags after positionals). argparse costs ~20 ms of start-up here; this costs none."""
from __future__ import annotations

import os
import sys

from libcontainer.errors import InvalidArgument


class Flag:
    def __init__(self, names: str, dest: str, takes_value: bool = False, default=None,
                 help: str = "", multiple: bool = False):
        self.names = names.split(",")
        self.dest = dest
        self.takes_value = takes_value
        self.default = default if not multiple else []
        self.help = help
        self.multiple = multiple


def parse(argv: list, flags: list, stop_at_positional: bool = False):
    """→ (options dict, positionals). With stop_at_positional, everything after the first
    positional is positional too (for `exec ID cmd --flag-of-cmd`)."""
    by_name = {n: f for f in flags for n in f.names}
    opts = {f.dest: f.default for f in flags}
    pos: list = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos.extend(argv[i + 1:])
            break
        if a.startswith("-") and a != "-" and not (stop_at_positional and pos):
            name, eq, value = a.partition("=")
            f = by_name.get(name)
            if f is None:
                raise InvalidArgument(f"flag provided but not defined: {name}")
            if f.takes_value:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise InvalidArgument(f"flag needs an argument: {name}")
                    value = argv[i]
                if f.multiple:
                    opts[f.dest].append(value)
                else:
                    opts[f.dest] = value
            else:
                opts[f.dest] = value.lower() not in ("false", "0") if eq else True
        else:
            pos.append(a)
        i += 1
    return opts, pos


def usage(flags: list) -> str:
    lines = []
    for f in flags:
        names = ", ".join(f.names) + (" value" if f.takes_value else "")
        lines.append(f"   {names:<28} {f.help}")
    return "\n".join(lines)


def flag_help(verb: str, flags: list) -> int:
    sys.stdout.write(f"usage: runner {verb} [flags]\n\n{usage(flags)}\n")
    return 0


def positional_id(pos: list, verb: str) -> str:
    if len(pos) != 1:
        raise InvalidArgument(f"{verb}: expects exactly one container id, got {len(pos)}")
    return pos[0]


def bundle_dir(value: str) -> str:
    return os.path.abspath(value or ".")
