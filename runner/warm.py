"""`runner warm-server`: the verbs that make no process, served by an interpreter that has
already started, for the installed launcher (csrc/warm_client.h) to hand its call to.

The interpreter's start-up and imports are most of a `runner state` (~14 ms of ~16): here
they are paid once. Each call is served by a forked worker that first becomes the caller
(runner/warm_peer.py: the security boundary, and what it adopts), then runs runner's own
`main` with the caller's argv, environment, working directory and stdio, exactly the code
of the plain path. The worker's exit status (or the signal it died of) goes back; the
launcher exits with it (or dies of the signal). A caller that goes away (an engine killing
`runner kill`) takes its worker with it, as it would have taken the plain path's
interpreter (see _die_with).

One server per uid and state root: the socket is ROOT/.warm.sock (0600; names starting
with "." are not containers). `create` and `run` are served with the clone and the waits
done in the caller's process, whose child the init must be for the engines' subreapers
(runner/warm_spawn.py); `exec` is never served.
"""
from __future__ import annotations

import io
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

from libcontainer.errors import InvalidArgument

from . import warm_pages, warm_peer, warm_spawn
from .args import Flag, flag_help, parse

# what the launcher hands over (csrc/warm_client.h's list, and cli's verb names)
SERVED = frozenset(("start", "state", "kill", "delete", "list", "ps", "pause", "resume",
                    "update", "features", "spec", "create", "run"))
SOCKET_NAME = ".warm.sock"
# "RWM1": a launcher from before served create/run (its 'P' unknown to it); "RWM2": since
MAGICS = {0x314D5752: 1, 0x324D5752: 2}
FLAGS = [
    Flag("--idle-exit", "idle_exit", True, "0", "exit after this many seconds without a call "
         "(0: never)"),
    Flag("--help,-h", "help"),
]
# Imported before serving, so that no worker imports them: what the served verbs load
# (runner --debug warm-server names what a worker still imported).
PRELOAD = ("runner.lifecycle", "runner.info", "runner.cgroup_verbs", "libcontainer.container",
           "libcontainer.cgroups", "libcontainer.cgroups.manager", "libcontainer.cgroups.fs",
           "libcontainer.cgroups.tree", "libcontainer.cgroups.stats", "libcontainer.hooks",
           "libcontainer.teardown", "libcontainer.owners", "libcontainer.timefmt",
           "libcontainer.features", "libcontainer.spec", "libcontainer.jsonio", "subprocess",
           "libcontainer.recovery", "traceback", "json", "pwd", "ctypes", "fcntl",
           "libcontainer.creation", "libcontainer.launch", "libcontainer.plan",
           "libcontainer.request", "libcontainer.cgroups.devices", "runner.warm_spawn", "_locale")


def cmd_warm_server(ctx, argv: list) -> int:
    opts, pos = parse(argv, FLAGS)
    if opts["help"]:
        return flag_help("warm-server", FLAGS)
    if pos:
        raise InvalidArgument(f"warm-server: unexpected argument {pos[0]!r}")
    try:
        idle = float(opts["idle_exit"])
    except ValueError:
        raise InvalidArgument(f"--idle-exit: {opts['idle_exit']!r} is not a number") from None
    return Server(ctx.root, idle, ctx.debug).serve()


# Workers waiting in accept(): a call wakes one, no fork on its path. The ones taken are
# replaced once calls have paused for REFILL_AFTER seconds, or at once when none is left:
# a fork and its page copies (~2.5 ms of CPU) made while the next calls of a burst are
# served compete with them for the CPUs (an engine calls start, state, kill, state,
# delete back to back; measured: replacing each at once made those 1.3-1.9x slower).
# SPARES wait at first; a longer burst seen raises it to the burst's length and one, up
# to MAX_SPARES (each holds ~3 MB of copied pages: warm_pages).
SPARES, MAX_SPARES, REFILL_AFTER = 4, 8, 0.02


class Server:
    """The parent keeps up to SPARES forked workers blocked in accept() on the socket; the
    one a call wakes tells the parent (a datagram with its pid and, over SCM_RIGHTS, the
    connection), serves the call and writes the reply itself, and the parent forks
    another when calls pause (SPARES).
    Only the launcher and one worker are on a call's path. The parent writes the reply of
    a worker that died of a signal (or failed before its reply) on the connection it was
    given."""

    def __init__(self, root: str, idle: float, debug: bool):
        self.root, self.idle, self.debug = root, idle, debug
        self.path = os.path.join(root, SOCKET_NAME)
        self.spares: set = set()
        self.busy: dict = {}  # worker pid → its connection
        self.exited: dict = {}  # spares reaped (a call they took may still be announced)
        self.learned = warm_pages.Learned()  # the pages calls write (warm_pages)
        self.learning = True  # whether the spare being forked reports what its call wrote
        self.want, self.burst = SPARES, 0  # spares to keep; calls since the last pause
        self.stop = False

    def log(self, msg: str) -> None:
        if self.debug:
            os.write(self.logfd, f"runner warm-server: {msg}\n".encode())

    def serve(self) -> int:
        from libcontainer.state import make_root

        _close_inherited()
        make_root(self.root)
        self.logfd = os.dup(2)
        os.set_inheritable(self.logfd, False)
        self.listener = self._listen()
        ino = os.stat(self.path).st_ino
        for name in PRELOAD:
            __import__(name)
        _c_environ()
        _warm_user_database()
        warm_pages.prepare()
        self.own = warm_peer.identity()
        self.taken_r, self.taken_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.parent_fds = [wake_r, wake_w, self.taken_r.fileno()]
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        os.chdir("/")
        import gc

        gc.collect()
        gc.freeze()  # what the workers share with this process stays shared
        self.log(f"serving {self.path} (pid {os.getpid()})")
        poll = select.poll()
        poll.register(self.taken_r, select.POLLIN)
        poll.register(wake_r, select.POLLIN)
        last = time.monotonic()
        try:
            while not self.stop or self.busy:
                if self.stop:
                    self._stop_spares()
                else:
                    paused = time.monotonic() >= last + REFILL_AFTER
                    while not self.spares or (paused and len(self.spares) < self.want):
                        self._fork_spare()
                wait = None
                if self.idle and not self.busy and not self.stop:
                    wait = max(0.0, last + self.idle - time.monotonic())
                if len(self.spares) < self.want and not self.stop:  # (wake up to refill)
                    refill = max(0.0, last + REFILL_AFTER - time.monotonic())
                    wait = refill if wait is None else min(wait, refill)
                events = poll.poll(None if wait is None else wait * 1000)
                if not events and self.idle and not self.busy and \
                        time.monotonic() >= last + self.idle:
                    self.log("idle: exiting")
                    break
                for fd, _ in events:
                    if fd == wake_r:
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            pass
                        self._reap()
                    else:
                        now = time.monotonic()
                        if self._taken():
                            self.burst = self.burst + 1 if now < last + REFILL_AFTER else 1
                            if self.burst + 1 > self.want < MAX_SPARES:
                                self.want = min(self.burst + 1, MAX_SPARES)
                                self.log(f"a burst of {self.burst} calls: {self.want} spares")
                        last = now
        finally:
            signal.set_wakeup_fd(-1)
            self._unlink(ino)
            self._stop_spares()
            for pid in self.spares:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
        return 0

    def _on_signal(self, sig, frame) -> None:
        if sig != signal.SIGCHLD:
            self.stop = True

    def _listen(self) -> socket.socket:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        else:
            raise InvalidArgument(f"warm-server: one already serves {self.root} ({self.path})")
        finally:
            probe.close()
        try:
            os.unlink(self.path)  # a stale socket of a server that died
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            s.bind(self.path)
        finally:
            os.umask(old)
        s.listen(128)
        return s

    def _unlink(self, ino: int) -> None:
        try:
            if os.stat(self.path).st_ino == ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _stop_spares(self) -> None:
        """No more calls: shutdown() of the listening socket ends every accept() waiting
        on it (EINVAL), so the idle workers exit, and a worker that took a call serves it
        to the end; a connection not yet accepted is refused, and its launcher goes the
        plain way. (Never a signal: it could catch a worker that has just taken a call.)"""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()

    def _fork_spare(self) -> None:
        server = os.getpid()
        self.learning = self.learned.wants_report()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                warm_pages.populate(self.learned.ranges)  # before its own writes fault them
                code = self._spare(server)
            finally:
                os._exit(code)
        self.spares.add(pid)

    def _taken(self) -> bool:
        """A worker took a call: it is busy, with the connection to answer if it dies.
        (Or a worker that served one reports the pages it wrote: warm_pages; → False.)"""
        try:
            data, fds, _, _ = socket.recv_fds(self.taken_r, 1 << 16, 1,
                                              socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            return False
        if data.startswith(warm_pages.REPORT) and not fds:
            new = self.learned.add(data)
            self.log(f"learned {new} pages written by a call ({len(self.learned.pages)} "
                     f"in {len(self.learned.ranges)} ranges)")
            return False
        if len(data) != 4:
            return False
        pid = struct.unpack("<i", data)[0]
        self.spares.discard(pid)
        conn = socket.socket(fileno=fds[0]) if fds else None
        if pid in self.exited:  # reaped before its datagram was read: answer for it now
            self._answer(conn, self.exited.pop(pid))
        else:
            self.busy[pid] = conn
        return True

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.spares:
                self.spares.discard(pid)
                # a spare that exited before announcing a call it took: its datagram may
                # still be queued; keep its status for _taken
                self.exited[pid] = status
                continue
            if pid in self.busy:
                self._answer(self.busy.pop(pid), status)

    def _answer(self, conn, status: int) -> None:
        """The worker wrote its own reply when it exited 0; else the launcher is told how
        it ended."""
        if conn is None:
            return
        if os.WIFSIGNALED(status):
            reply = struct.pack("<4si", b"S", os.WTERMSIG(status))
        elif os.waitstatus_to_exitcode(status):
            reply = struct.pack("<4si", b"E", os.waitstatus_to_exitcode(status))
        else:
            reply = b""
        if reply:
            try:
                conn.send(reply, socket.MSG_NOSIGNAL)
            except OSError:
                pass  # the caller is gone (or fell back after a refusal)
        conn.close()

    # ---- in a forked worker ----

    def _spare(self, server: int) -> int:
        """Wait for a call, then serve it; the exit status is 0 once the reply is written.
        A spare ends with the server (SIGKILL'd, it cannot stop them); a worker that took
        a call serves it to the end."""
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C to the server: it stops them
        signal.set_wakeup_fd(-1)
        for fd in self.parent_fds:
            os.close(fd)
        for other in self.busy.values():
            if other is not None:
                other.close()
        prctl = _libc().prctl
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != server:
            return 0
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return 0  # the server stops (_stop_spares)
        self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt if self.debug else 0
        # (a server dying before this: the launcher saw no reply, and goes the plain way)
        prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as the plain path's
        self.listener.close()
        socket.send_fds(self.taken_w, [struct.pack("<i", os.getpid())], [conn.fileno()])
        pid, uid, _gid = struct.unpack("iII", conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return self._work(conn, pid, uid)

    def _work(self, conn: socket.socket, pid: int, uid: int) -> int:
        conn.settimeout(5)
        fds: list = []
        try:
            argv, env, fds, version = _receive(conn)
            pidfd = warm_peer.peer_pidfd(conn, pid)
            peer = warm_peer.check(self.own, pid, uid)
            gone = not warm_peer.alive(pidfd)
            os.close(pidfd)
            if gone:
                raise warm_peer.Refused("the caller exited")
            verb = _verb(argv[1:]) if len(argv) >= 2 else ""
            if verb not in SERVED:
                raise warm_peer.Refused(f"not a served call: {argv[1:3]}")
            warm_peer.adopt(peer, pid)
            if verb in warm_spawn.SPAWNING:
                os.fchdir(fds[3])  # (the bundle is found from the caller's cwd)
                why = warm_spawn.servable(argv[1:], env) if version >= 2 else \
                    "a launcher from before served create/run"
                if why:
                    raise warm_spawn.PlainPath(f"{verb}: {why}")
        except (warm_peer.Refused, OSError, ValueError) as e:
            if isinstance(e, warm_spawn.PlainPath):  # not a refusal: an option it leaves
                self.log(f"plain path for pid {pid}: {e}")
            else:
                self.log(f"refused pid {pid}: {e}")
            try:
                conn.send(struct.pack("<4si", b"R", 0), socket.MSG_NOSIGNAL)
            except OSError:
                pass
            return 0
        before = set(sys.modules) if self.debug else ()
        if self.debug:
            self.log(f"worker {os.getpid()} serving pid {pid}: {' '.join(argv[1:])}")
        conn.settimeout(None)
        _die_with(conn)
        os.fchdir(fds[3])
        for i in range(3):
            os.dup2(fds[i], i)
        for fd in fds:
            os.close(fd)
        _take_environment(env)
        _refresh_from_env()
        sys.argv = argv
        _fresh_stdio()
        conn.send(struct.pack("<4si", b"A", 0), socket.MSG_NOSIGNAL)
        caller = None
        if verb in warm_spawn.SPAWNING:
            from libcontainer import launch

            caller = launch.PARENT = warm_spawn.Caller(conn, forward=verb == "run")
        code = _run(argv[1:])
        if caller is not None:
            caller.close()
        if self.debug and set(sys.modules) - before:
            self.log(f"pid {pid}'s call imported {sorted(set(sys.modules) - before)}")
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # the caller exits on this reply
        warm_peer.leave_cgroups()
        if self.debug:
            # this process's CPU time since its fork (the wait for the call, the pages
            # copied ahead, the call: tests/bench/bench_scale.py reads it), and the page
            # faults since it took the call (warm_pages)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults
            self.log(f"pid {pid}'s call took {time.process_time_ns() / 1e6:.3f} ms CPU, "
                     f"{faults} page faults")
        conn.send(struct.pack("<4si", b"E", code), socket.MSG_NOSIGNAL)
        conn.close()
        try:  # (the caller has its reply: this is off its path; a full queue drops it)
            if self.learning:
                self.taken_w.send(warm_pages.report(self.learned.pages), socket.MSG_DONTWAIT)
        except OSError:
            pass
        return 0


def _close_inherited() -> None:
    """Close what the server's starter left open beyond stdio: a server that kept it would
    hold, for as long as it lives, a pipe its starter reads to the end, or the lock of a
    `flock` it was started under. An fd inherited across exec is inheritable; every fd
    Python opened itself is not (PEP 446), so those are the ones closed."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                os.close(fd)
        except OSError:  # listdir's own fd, closed by now
            pass


PR_SET_PDEATHSIG = 1


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _die_with(conn: socket.socket) -> None:
    """The caller killed (an engine's timeout) ends this worker as it would have ended the
    plain path's interpreter: its hang-up makes the connection readable, and O_ASYNC turns
    that into a SIGIO, whose default action ends the process. (The launcher writes nothing
    after its request, so nothing else makes it readable.)"""
    import fcntl

    fcntl.fcntl(conn, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(conn, fcntl.F_SETFL, fcntl.fcntl(conn, fcntl.F_GETFL) | os.O_ASYNC)
    p = select.poll()
    p.register(conn, select.POLLIN | select.POLLRDHUP)
    if p.poll(0):  # gone before O_ASYNC was on
        os.kill(os.getpid(), signal.SIGIO)


def _receive(conn: socket.socket):
    """The launcher's request: (argv, the environment's entries as bytes, [stdin, stdout,
    stderr, cwd], the protocol's version). (It comes in one sendmsg: one recvmsg reads it,
    most often.)"""
    first, fds, flags, _ = socket.recv_fds(conn, 1 << 16, 4, socket.MSG_CMSG_CLOEXEC)
    if len(fds) != 4 or len(first) < 16:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"a request with {len(fds)} fds, a {len(first)}-byte header")
    magic, argc, envc, size = struct.unpack("<4I", first[:16])
    if magic not in MAGICS or size > 1 << 24:
        raise ValueError("not a launcher's request")
    data = bytearray(first[16:])
    while len(data) < size:
        chunk = conn.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise ValueError("a short request")
        data += chunk
    items = bytes(data).split(b"\0")
    if len(items) != argc + envc + 1 or items[-1]:
        raise ValueError("argc and envc do not add up")
    return [os.fsdecode(a) for a in items[:argc]], items[argc:-1], fds, MAGICS[magic]


def _verb(args: list) -> str:
    """The verb, as runner.cli finds it after the global flags."""
    from .cli import _takes_value

    for i, a in enumerate(args):
        if not a.startswith("-") and (i == 0 or not _takes_value(args[i - 1])):
            return a
    return ""


def _take_environment(entries: list) -> None:
    """The caller's environment, as its own interpreter would have had it: the C environ
    its entries exactly (what a hook run through subprocess inherits), the LC_CTYPE
    locale taken from it, coerced as the interpreter coerces the C locale (PEP 538:
    LC_CTYPE=C.UTF-8 set), and os.environ made from them as the interpreter makes it at
    start-up (convertenviron: the first of a name wins, an entry without "=" is
    skipped). One assignment, where clearing os.environ and updating it was an unsetenv
    and a setenv per name (~150 µs)."""
    global _ENVIRON
    import ctypes

    environ = _c_environ()
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):  # not CPython's os._Environ: the slow, sure way
        os.environ.clear()
        for entry in entries:
            k, eq, v = entry.partition(b"=")
            if eq and os.fsdecode(k) not in os.environ:
                os.environ[os.fsdecode(k)] = os.fsdecode(v)
        return
    _ENVIRON = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)  # kept: environ's
    environ.value = ctypes.addressof(_ENVIRON)
    coerced = _coerce_locale(entries)
    if coerced is not None:
        entries = coerced
        _ENVIRON = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
        environ.value = ctypes.addressof(_ENVIRON)
    fresh: dict = {}
    for entry in entries:
        k, eq, v = entry.partition(b"=")
        if eq:
            fresh.setdefault(k, v)
    data.clear()
    data.update(fresh)  # (os.environb shares it)


_ENVIRON = None


def _c_environ():
    """libc's `environ` as a ctypes pointer: looked up once, by the server (warm_server
    calls it before it forks), not by each worker (a dlopen and a symbol lookup)."""
    global _C_ENVIRON
    if _C_ENVIRON is None:
        import ctypes

        _C_ENVIRON = ctypes.c_void_p.in_dll(ctypes.CDLL(None), "environ")
    return _C_ENVIRON


_C_ENVIRON = None


def _warm_user_database() -> None:
    """One user lookup in the server, so that glibc's NSS set-up (nsswitch.conf read and
    parsed, its databases opened) is done once and inherited: a worker's `state` or
    `list` then only does the lookup itself, afresh, as the plain path does (glibc
    re-reads nsswitch.conf when it changes)."""
    import pwd

    try:
        pwd.getpwuid(os.geteuid())
    except KeyError:
        pass


def _coerce_locale(entries: list):
    """The interpreter's start-up with this environment: setlocale(LC_CTYPE, ""), and a C
    locale with LC_ALL unset coerced to the first of C.UTF-8, C.utf8, UTF-8 there is,
    which it then setenv()s as LC_CTYPE (CPython's _Py_CoerceLegacyLocale: the first
    LC_CTYPE entry replaced, else one added at the end). → the entries so changed, or
    None."""
    import _locale

    try:
        _locale.setlocale(_locale.LC_CTYPE, "")
    except _locale.Error:
        pass  # a locale the system lacks: the interpreter stays in "C" too
    lc_all = next((e[7:] for e in entries if e.startswith(b"LC_ALL=")), b"")  # getenv's
    if _locale.setlocale(_locale.LC_CTYPE) != "C" or lc_all:
        return None
    for target in ("C.UTF-8", "C.utf8", "UTF-8"):
        try:
            _locale.setlocale(_locale.LC_CTYPE, target)
        except _locale.Error:
            continue
        out = list(entries)
        for i, entry in enumerate(out):
            if entry.startswith(b"LC_CTYPE="):
                out[i] = b"LC_CTYPE=" + target.encode()
                return out
        return out + [b"LC_CTYPE=" + target.encode()]
    return None


def _refresh_from_env() -> None:
    """What modules read from the environment when imported, read again: the server
    imported them in its own."""
    from libcontainer import state

    state.faults_from(os.environ)
    subids = sys.modules.get("libcontainer.subids")
    if subids is not None:
        subids.HELPER_PATH = os.pathsep.join((os.environ.get("PATH", ""), "/usr/bin",
                                              "/usr/sbin", "/bin"))
    time.tzset()


def _fresh_stdio() -> None:
    """sys.stdin/stdout/stderr over the caller's fds, buffered as the interpreter would
    have made them for those fds (line-buffered on a terminal)."""
    for fd, name, mode in ((0, "stdin", "rb"), (1, "stdout", "wb"), (2, "stderr", "wb")):
        old = getattr(sys, name)
        tty = os.isatty(fd)
        raw = io.FileIO(fd, mode, closefd=False)
        buf = io.BufferedReader(raw) if mode == "rb" else io.BufferedWriter(raw)
        setattr(sys, name, io.TextIOWrapper(buf, encoding=old.encoding, errors=old.errors,
                                            line_buffering=tty or fd == 2,
                                            write_through=fd == 2))


def _run(args: list) -> int:
    from . import __main__ as entry

    try:
        code = entry.main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # as the interpreter would: the traceback, exit status 1
        import traceback

        traceback.print_exc()
        code = 1
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except OSError:
            pass
    return code
