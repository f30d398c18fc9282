"""Verbs that only tell: --version, spec, features."""
from __future__ import annotations

import os
import sys

from libcontainer import jsonio
from libcontainer.errors import InvalidArgument

from .args import Flag, parse
from .cli import bundle_dir, flag_help

SPEC_FLAGS = [
    Flag("--bundle,-b", "bundle", True, "", "where to write config.json"),
    Flag("--rootless", "rootless", help="a config for an unprivileged user (user namespace)"),
    Flag("--help,-h", "help"),
]


def version() -> int:
    import libcontainer
    from libcontainer import shim

    sys.stdout.write(f"runner version {libcontainer.__version__}\n"
                     f"spec: {libcontainer.OCI_VERSION}\n"
                     f"libseccomp: {shim.seccomp_version()}\n")
    return 0


def cmd_spec(ctx, argv: list) -> int:
    from libcontainer.default_spec import default_config

    opts, pos = parse(argv, SPEC_FLAGS)
    if opts["help"]:
        return flag_help("spec", SPEC_FLAGS)
    if pos:
        raise InvalidArgument(f"spec: unexpected argument {pos[0]!r}")
    path = os.path.join(bundle_dir(opts["bundle"]), "config.json")
    if os.path.exists(path):
        raise InvalidArgument(f"spec: {path} already exists; remove it first")
    try:
        with open(path, "x") as f:
            f.write(jsonio.dumps(default_config(rootless=opts["rootless"]), indent=2) + "\n")
    except OSError as e:
        raise InvalidArgument(f"--bundle: cannot write {path}: {e.strerror}") from None
    return 0


def cmd_features(ctx, argv: list) -> int:
    from libcontainer.features import features

    sys.stdout.write(jsonio.dumps(features(), indent=2) + "\n")
    return 0
