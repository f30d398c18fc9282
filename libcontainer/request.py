"""What a create is asked: one value the CLI (`runner create` / `run`) and the Python API
(`libcontainer.create` / `run`) both build, so that the list of options lives in one place.

A plain class with __slots__, not a dataclass: `dataclasses` pulls in `re` and `inspect`,
which `runner run` never loads (tests/integration/test_inprocess_api.py checks)."""
from __future__ import annotations


class CreateRequest:
    """A container to create: `bundle` and `id`, where its state goes (`root`; None: the
    default) and how it starts.

    `stdio` is (stdin, stdout, stderr) as files, fds or None (keep this process's).
    `console_socket`: where the pty master goes (process.terminal, detached). `pid_file`:
    the init's pid is written there. `no_pivot`: MS_MOVE + chroot instead of pivot_root.
    `keep_fds`: this process's fds 3.. 3+N-1 are passed on (--preserve-fds). `new_keyring`:
    a session keyring of its own. `warn`: called with each warning (default: the
    `libcontainer` logger). `listen_fds` (socket activation): fds 3.. are passed on before
    the `keep_fds` ones, and LISTEN_FDS/LISTEN_PID say so. `notify_socket` (NOTIFY_SOCKET,
    the host's sd_notify socket): the process gets a socket of the runtime's (notify.py).
    `systemd_cgroup` (runc's --systemd-cgroup): the cgroup is a transient systemd scope.
    `start_now` / `foreground`: set by `run` (create + start at once; the terminal is
    relayed by this process). `init` (docker run --init): the process is started by a small
    init of the shim's that is pid 1 instead of it: it forwards signals, reaps orphans, and
    exits with the process's exit code or 128 + the signal that ended it; with an
    `init_status_fd` (a pipe's write end of this process) it first writes the raw wait
    status there (4 bytes, native order), so the caller can tell a signal from an exit.
    `cgroup_controllers`: the v1 cgroup hierarchies the container joins (devices always);
    empty: every one the host has, as runc (libcontainer.sandbox asks for those its limits
    and counters use)."""

    __slots__ = ("bundle", "id", "root", "stdio", "console_socket", "pid_file", "no_pivot",
                 "keep_fds", "new_keyring", "warn", "listen_fds", "notify_socket",
                 "systemd_cgroup", "start_now", "foreground", "init", "init_status_fd",
                 "cgroup_controllers")

    def __init__(self, bundle: str, id: str, *, root: str | None = None, stdio=None,
                 console_socket: str = "", pid_file: str = "", no_pivot: bool = False,
                 keep_fds: int = 0, new_keyring: bool = True, warn=None, listen_fds: int = 0,
                 notify_socket: str = "", systemd_cgroup: bool = False,
                 start_now: bool = False, foreground: bool = False, init: bool = False,
                 init_status_fd: int = -1, cgroup_controllers: "tuple[str, ...]" = ()):
        self.bundle, self.id, self.root, self.stdio = bundle, id, root, stdio
        self.console_socket, self.pid_file, self.no_pivot = console_socket, pid_file, no_pivot
        self.keep_fds, self.new_keyring, self.warn = keep_fds, new_keyring, warn
        self.listen_fds, self.notify_socket = listen_fds, notify_socket
        self.systemd_cgroup, self.start_now, self.foreground = (systemd_cgroup, start_now,
                                                                foreground)
        self.init, self.init_status_fd = init, init_status_fd
        self.cgroup_controllers = tuple(cgroup_controllers)

    def __repr__(self) -> str:
        return "CreateRequest(" + ", ".join(f"{k}={getattr(self, k)!r}"
                                            for k in self.__slots__) + ")"
