"""`runner system prune`: what the store holds for nothing (layers and blobs of no image,
what killed pulls, pushes and saves left under tmp/, upload sessions of killed pushes)."""
from __future__ import annotations

import sys

from libcontainer.errors import InvalidArgument

from .args import Flag, flag_help, parse
from .images import HELP, STORAGE

PRUNE_FLAGS = [STORAGE, Flag("--force,-f", "force", help="(accepted: the runner never asks)"), HELP]


def cmd_system(ctx, argv: list) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write("usage: runner system prune [flags]\n")
        return 0 if argv else 1
    if argv[0] != "prune":
        raise InvalidArgument(f"system: unknown command {argv[0]!r} (want prune)")
    from libcontainer import images

    opts, pos = parse(argv[1:], PRUNE_FLAGS)
    if opts["help"]:
        return flag_help("system prune", PRUNE_FLAGS)
    if pos:
        raise InvalidArgument(f"system prune: unexpected argument {pos[0]!r}")
    for line in images.prune(opts["storage"] or None):
        sys.stdout.write(f"Deleted: {line}\n")
    return 0
