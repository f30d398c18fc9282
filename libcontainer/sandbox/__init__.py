"""Untrusted code in an image, with limits, from Python — like subprocess.run.

    from libcontainer import sandbox
    box = sandbox.Sandbox("/srv/rootfs", limits=sandbox.Limits(cpu_time=2, memory="128m"))
    r = box.run(["python3", "main.py"], files={"main.py": b"print(42)"})
    r.status, r.exit_code, r.stdout            # "OK", 0, b"42\\n"
    with box.workdir() as wd:                  # files persist between runs
        box.run(["gcc", "a.c"], files={"a.c": src}, workdir=wd)
        box.run(["./a.out"], workdir=wd, stdin=b"3 4")
    sandbox.run("/srv/rootfs", ["true"])       # one-shot

Not imported by `import libcontainer` or `runner run`."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .box import LimitsUnavailable, Sandbox, Workdir
from .limits import Limits, parse_size
from .result import (INTERNAL_ERROR, MEMORY_LIMIT, OK, RUNTIME_ERROR, SIGNALED, TIMEOUT,
                     Result)

if TYPE_CHECKING:
    from .. import images


def run(image: "str | os.PathLike | images.Image", cmd: "list[str] | str", *,
        limits: Limits | None = None, network: "bool | str" = False, user: str | None = None,
        readonly_root: bool = False, workdir: str = "/box", storage: str | None = None,
        rlimits_only: bool = False, files: "dict[str, bytes | str] | None" = None,
        stdin: bytes | str = b"", env: "dict[str, str] | None" = None) -> Result:
    """One command in a Sandbox made for it, then removed (the arguments as for Sandbox()
    and Sandbox.run())."""
    with Sandbox(image, limits, network=network, user=user, readonly_root=readonly_root,
                 workdir=workdir, storage=storage, rlimits_only=rlimits_only) as box:
        return box.run(cmd, files=files, stdin=stdin, env=env)


__all__ = ["Sandbox", "Workdir", "LimitsUnavailable", "Limits", "Result", "run", "parse_size", "OK", "TIMEOUT",
           "SIGNALED", "RUNTIME_ERROR", "INTERNAL_ERROR", "MEMORY_LIMIT"]
