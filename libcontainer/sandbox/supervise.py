"""One run, from the started container to its Result: stdin fed, stdout and stderr read
(the part past the cap thrown away, so a full pipe never stalls the program or us), CPU
time of the whole cgroup watched, the wall clock kept, and the kernel's own counters read
at the end. Everything waits in one poll(): no thread per run."""
from __future__ import annotations

import os
import select
import signal
import time

from .result import Result

_CHUNK = 1 << 16
_DRAIN = 1 << 20
_devnull: list = []


def _null() -> int:
    if not _devnull:
        _devnull.append(os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC))
    return _devnull[0]


class Counters:
    """The run's cgroup files: CPU time, peak memory, OOM kills (v1 or v2, whichever holds
    the controller). Without a cgroup every read is 0 (the rlimit-only mode)."""

    def __init__(self, cg) -> None:
        self.cpu_file = self.peak_file = self.oom_file = ""
        self.v2_cpu = self.v2_oom = False
        if cg is None:
            return
        paths = cg.paths
        uni = cg.unified
        if "cpuacct" in paths and os.path.exists(os.path.join(paths["cpuacct"], "cpuacct.usage")):
            self.cpu_file = os.path.join(paths["cpuacct"], "cpuacct.usage")
        elif uni and os.path.exists(os.path.join(uni, "cpu.stat")):
            self.cpu_file, self.v2_cpu = os.path.join(uni, "cpu.stat"), True
        mem = paths.get("memory")
        if mem and os.path.isdir(mem):
            self.peak_file = os.path.join(mem, "memory.max_usage_in_bytes")
            self.oom_file = os.path.join(mem, "memory.oom_control")
        elif uni and os.path.exists(os.path.join(uni, "memory.events")):
            self.oom_file, self.v2_oom = os.path.join(uni, "memory.events"), True
            peak = os.path.join(uni, "memory.peak")
            self.peak_file = peak if os.path.exists(peak) else ""

    @staticmethod
    def _read(path: str) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return b""
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    def cpu(self) -> float:
        """Seconds of CPU the whole cgroup used."""
        if not self.cpu_file:
            return 0.0
        data = self._read(self.cpu_file)
        if self.v2_cpu:
            for line in data.splitlines():
                if line.startswith(b"usage_usec "):
                    return int(line.split()[1]) / 1e6
            return 0.0
        return int(data or 0) / 1e9

    def peak(self) -> int:
        data = self._read(self.peak_file) if self.peak_file else b""
        return int(data) if data.strip().isdigit() else 0

    def oom_kills(self) -> int:
        if not self.oom_file:
            return 0
        for line in self._read(self.oom_file).splitlines():
            if line.startswith(b"oom_kill "):
                return int(line.split()[1])
        return 0


class _Stream:
    __slots__ = ("fd", "cap", "chunks", "size", "truncated")

    def __init__(self, fd: int, cap: int | None) -> None:
        self.fd, self.cap, self.chunks, self.size, self.truncated = fd, cap, [], 0, False

    def read(self) -> bool:
        """Take what is there; False at EOF."""
        room = _CHUNK if self.cap is None else self.cap - self.size
        try:
            if room > 0:
                data = os.read(self.fd, min(room, _CHUNK))
                if not data:
                    return False
                self.chunks.append(data)
                self.size += len(data)
                return True
            # past the cap: moved to /dev/null in the kernel (splice), a megabyte at a go
            try:
                n = os.splice(self.fd, _null(), _DRAIN, flags=getattr(os, "SPLICE_F_NONBLOCK", 2))
            except BlockingIOError:
                raise
            except OSError:
                n = len(os.read(self.fd, _DRAIN))
            if n > 0:
                self.truncated = True
            return n > 0
        except BlockingIOError:
            return True

    def data(self) -> bytes:
        return b"".join(self.chunks)


def supervise(pid: int, started: float, out_fd: int, err_fd: int, in_fd: int, stdin: bytes,
              limits, counters: Counters, status_fd: int = -1) -> Result:
    """Wait for the run whose init is our child `pid`; the fds are our ends of its pipes
    (-1: none) and are closed here. `status_fd` (non-blocking, not closed here): where the
    shim's init wrote the command's wait status, if the command ended by a signal."""
    for fd in (out_fd, err_fd, in_fd):
        if fd >= 0:
            os.set_blocking(fd, False)
    streams = {fd: _Stream(fd, limits.output) for fd in (out_fd, err_fd) if fd >= 0}
    out_s, err_s = streams.get(out_fd), streams.get(err_fd)
    res = Result()
    poller = select.poll()
    pidfd = os.pidfd_open(pid)
    poller.register(pidfd, select.POLLIN)
    for fd in streams:
        poller.register(fd, select.POLLIN)
    pending = memoryview(stdin or b"")
    if in_fd >= 0:
        if pending:
            poller.register(in_fd, select.POLLOUT)
        else:
            os.close(in_fd)
            in_fd = -1
    wall_end = started + limits.wall_time
    cpu_limit = limits.cpu_time
    ncpu = max(len(os.sched_getaffinity(0)), 1)
    next_cpu = started + (cpu_limit / ncpu if cpu_limit else 1e18)
    killed = False
    exited = False
    try:
        while not exited:
            now = time.monotonic()
            if not killed and now >= wall_end:
                res.timed_out = res.wall_timed_out = True
                killed = _kill(pidfd)
            if not killed and now >= next_cpu:
                used = counters.cpu()
                if used >= cpu_limit:
                    res.timed_out = True
                    killed = _kill(pidfd)
                else:
                    # it cannot use more than ncpu seconds a second: look again when it could
                    # have, at the earliest
                    next_cpu = now + max((cpu_limit - used) / ncpu, 0.002)
            wait = min(wall_end, next_cpu) - now if not killed else 1.0
            for fd, ev in poller.poll(max(wait, 0) * 1000 + 0.5):
                if fd == pidfd:
                    exited = True
                elif fd == in_fd:
                    try:
                        n = os.write(in_fd, pending[:_CHUNK])
                        pending = pending[n:]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        poller.unregister(in_fd)
                        os.close(in_fd)
                        in_fd = -1
                else:
                    s = streams[fd]
                    if not s.read():
                        poller.unregister(fd)
                        os.close(fd)
                        del streams[fd]
        _, status, rusage = os.wait4(pid, 0)
        res.duration = time.monotonic() - started
        # The init of the pid namespace is gone, so is every process of it: the pipes'
        # other ends are closed, what is left in them is read to the end (bounded: a
        # process outside the namespace could hold one; none is given one)
        drain_end = time.monotonic() + 2.0
        poller.unregister(pidfd)
        if in_fd >= 0:
            poller.unregister(in_fd)
            os.close(in_fd)
            in_fd = -1
        while streams and time.monotonic() < drain_end:
            for fd, _ in poller.poll(max(drain_end - time.monotonic(), 0) * 1000):
                s = streams.get(fd)
                if s is not None and not s.read():
                    poller.unregister(fd)
                    os.close(fd)
                    del streams[fd]
        status = _command_status(status_fd, status)
        if os.WIFSIGNALED(status):
            res.signal = os.WTERMSIG(status)
        else:
            res.exit_code = os.WEXITSTATUS(status)
        res.cpu_time = counters.cpu() if counters.cpu_file else rusage.ru_utime + rusage.ru_stime
        res.max_rss = counters.peak() or rusage.ru_maxrss * 1024
        res.oom_killed = counters.oom_kills() > 0
        if cpu_limit is not None and (res.signal == signal.SIGXCPU or (
                res.cpu_time >= cpu_limit and (res.signal == signal.SIGKILL or killed))):
            # RLIMIT_CPU (its soft limit is at or past cpu_time: SIGXCPU, the hard one
            # SIGKILL), or ended just as it ran out. (A process's rusage can read a few
            # percent under the total its RLIMIT_CPU counted.)
            res.timed_out = True
        for s, attr in ((out_s, "stdout"), (err_s, "stderr")):
            if s is not None:
                setattr(res, attr, s.data())
                res.output_truncated |= s.truncated
        return res
    finally:
        os.close(pidfd)
        if in_fd >= 0:
            os.close(in_fd)
        for fd in streams:
            os.close(fd)


def _command_status(fd: int, init_status: int) -> int:
    """The command's wait status: the one its init wrote (a signal's), else the init's own
    (its exit code is the command's; a signal is one that killed the init: ours)."""
    if fd < 0 or os.WIFSIGNALED(init_status):
        return init_status
    try:
        data = os.read(fd, 4)
    except BlockingIOError:
        return init_status
    return int.from_bytes(data, "little") if len(data) == 4 else init_status


def _kill(pidfd: int) -> bool:
    """SIGKILL the namespace's init: the kernel kills every process of the namespace."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
