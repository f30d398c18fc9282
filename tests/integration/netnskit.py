"""A throw-away network namespace held by a sleeping process, for tests and benches that
need one (the CNI tests' "hosts", the daemons' bridges).

Not `ip netns add`: that bind-mounts /run/netns on itself the first time and nothing
undoes it, a mount left on the host. This namespace has no name and no mount: it is
`/proc/PID/ns/net` of a `sleep`, and dies with it (taking its bridges, veths and nftables
tables along). Enter it with `nsenter --net=PATH` — not `ip netns exec`, which also remounts
/sys in a mount namespace of its own and hides the cgroup hierarchies."""
from __future__ import annotations

import os
import signal
import subprocess
import time


class Netns:
    """A network namespace of its own; `hold` bounds how long it outlives a crashed test."""

    def __init__(self, hold: int = 600, lo_up: bool = False):
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", str(hold)])
        mine = os.readlink("/proc/self/ns/net")
        for _ in range(200):
            try:
                if os.readlink(f"/proc/{self.proc.pid}/ns/net") != mine:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        self.path = f"/proc/{self.proc.pid}/ns/net"
        if lo_up:
            self.sh("ip", "link", "set", "lo", "up")

    def enter(self) -> list:
        """The command prefix that runs a command inside."""
        return ["nsenter", f"--net={self.path}"]

    def sh(self, *cmd, check=True, timeout=30, **kw) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.enter(), *cmd], capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def popen(self, *cmd, **kw) -> subprocess.Popen:
        return subprocess.Popen([*self.enter(), *cmd], **kw)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
