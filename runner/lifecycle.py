"""Verbs that start and stop containers."""
from __future__ import annotations

import libcontainer
from libcontainer.errors import InvalidArgument

from .args import Flag, parse
from .cli import bundle_dir, flag_help, positional_id

RUN_FLAGS = [
    Flag("--bundle,-b", "bundle", True, "", "path to the bundle (default: current directory)"),
    Flag("--no-pivot", "no_pivot", help="use MS_MOVE + chroot instead of pivot_root"),
    Flag("--preserve-fds", "preserve_fds", True, "0", "pass N more fds (3 .. 3+N-1) to the process"),
    Flag("--help,-h", "help"),
]


def _int_flag(value: str, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f"{name}: {value!r} is not a number") from None
    if n < 0:
        raise InvalidArgument(f"{name}: must not be negative")
    return n


def cmd_run(ctx, argv: list) -> int:
    opts, pos = parse(argv, RUN_FLAGS)
    if opts["help"]:
        return flag_help("run", RUN_FLAGS)
    cid = positional_id(pos, "run")
    return libcontainer.run(bundle_dir(opts["bundle"]), cid, root=ctx.root,
                            no_pivot=opts["no_pivot"],
                            keep_fds=_int_flag(opts["preserve_fds"], "--preserve-fds"),
                            warn=ctx.warn)
