"""A warm spawner: `python -m libcontainer.engine.zygote` started once by the daemon, with
libcontainer already imported; each container start is a fork of it (no interpreter start,
no imports: ~100 ms less per `docker start` here). The forked child forks once more and
exits, so the monitor that the grandchild becomes is nobody's child but init's.

Protocol on the socket (fd 3): one message per start, the JSON args of spawn.main with
the status pipe's write end as SCM_RIGHTS. The zygote exits when the daemon closes its end."""
from __future__ import annotations

import json
import os
import socket
import sys


def warm() -> None:
    """Import what every create + start imports, and compile the default seccomp profile
    once: the forked spawners inherit both (the compile is libcontainer's text-keyed cache),
    where each would otherwise pay them (~30 ms a start here)."""
    import libcontainer.container  # noqa: F401
    import libcontainer.creation  # noqa: F401
    import libcontainer.launch  # noqa: F401
    import libcontainer.plan  # noqa: F401
    import libcontainer.cgroups.devices  # noqa: F401
    import libcontainer.cgroups.manager  # noqa: F401
    from libcontainer.security import confine

    from ..security.seccomp_default import default_profile
    from .oci import capabilities

    try:
        confine._compiled(json.loads(json.dumps(default_profile(capabilities=capabilities({})))))
    except Exception:  # no libseccomp here: each start says so itself
        pass


def main() -> int:
    warm()
    from . import spawn

    s = socket.socket(fileno=3)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(s, 1 << 16, 1)
        except OSError:
            return 0
        if not msg:
            return 0
        if not fds:
            continue
        args = json.loads(msg)
        args["status_fd"] = fds[0]
        pid = os.fork()
        if pid == 0:
            try:
                s.close()
                os.setsid()
                if os.fork() > 0:
                    os._exit(0)
                log = os.open(os.path.join(args["dir"], "spawn.log"),
                              os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.close(log)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
                os._exit(spawn.main(args))
            except BaseException:
                os._exit(1)
        os.close(fds[0])
        os.waitpid(pid, 0)


if __name__ == "__main__":
    sys.exit(main())
