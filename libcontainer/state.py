"""The state directory: ``<root>/<id>/state.json``, written atomically, one per container."""
from __future__ import annotations

import os
import stat

from . import fileio, jsonio
from .errors import AlreadyExists, DamagedState, InvalidArgument, NotFound

DEFAULT_ROOT = "/run/runner"  # root's; see default_root() for everyone else


def default_root() -> str:
    """The state root when none is given. Root: /run/runner (root of a user namespace:
    $XDG_RUNTIME_DIR/runner when set). Anyone else, as runc:
    $XDG_RUNTIME_DIR/runner; without it, a directory only that user can write:
    /run/user/UID/runner (logind's, which only root can create), else
    ~/.local/state/runner in a home directory that is theirs alone. Never a shared,
    predictable path (/tmp/…) that another user could create first."""
    uid = os.geteuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if uid == 0:
        from .userns import in_user_namespace

        # root of a user namespace (`unshare -r`): the invoking user's runtime dir, as runc
        return os.path.join(xdg, "runner") if xdg and in_user_namespace() else DEFAULT_ROOT
    if xdg:
        return os.path.join(xdg, "runner")
    run_user = f"/run/user/{uid}"
    if _private(run_user, uid):
        return os.path.join(run_user, "runner")
    import pwd

    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        home = ""
    if home and _private(home, uid):
        return os.path.join(home, ".local", "state", "runner")
    if not home:
        why = f"uid {uid} has no home directory"
    elif not os.path.isdir(home):
        why = f"its home directory {home} does not exist"
    else:
        why = f"its home directory {home} is not its alone (owned by it, writable by no one else)"
    raise InvalidArgument(f"--root: no private place for the state of uid {uid}: "
                          f"XDG_RUNTIME_DIR is not set, {run_user} does not exist and {why}; "
                          "set XDG_RUNTIME_DIR or pass --root DIR")


def _private(path: str, uid: int) -> bool:
    """A directory owned by `uid` that nobody else may write to."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022


def make_root(root: str) -> None:
    """Create the state root if needed. Root's is 0711 (runc's); an unprivileged user's
    directories are 0700, each level this creates (the state says what runs and where)."""
    if os.geteuid() == 0:
        os.makedirs(root, mode=0o711, exist_ok=True)
        return
    missing = []
    d = os.path.abspath(root)
    while not os.path.isdir(d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
    if missing:
        # sticky, as runc: XDG_RUNTIME_DIR's cleaner spares what carries the bit
        os.chmod(missing[0], 0o1700)

# Fault injection (tests/integration/test_crash_faults.py): RUNNER_CRASH_AT=K makes the runtime
# SIGKILL itself at the K-th crash_point() it passes, as a crash or an impatient caller
# would. Unset, a crash point costs one comparison: no syscall, no import.
# RUNNER_PAUSE_AT=NAME=SECONDS makes it sleep at each crash point whose name starts with
# NAME instead: a race's window held open (test_daemon.py).
_CRASH_AT = 0
_PAUSE_AT = ("", "")
_FAULTS = False
_crash_count = 0


def faults_from(env) -> None:
    """Read RUNNER_CRASH_AT and RUNNER_PAUSE_AT from `env` (at import; a warm server's
    worker again, from its caller's environment)."""
    global _CRASH_AT, _PAUSE_AT, _FAULTS
    crash = env.get("RUNNER_CRASH_AT", "")
    _CRASH_AT = int(crash) if crash.isdigit() else 0
    _PAUSE_AT = env.get("RUNNER_PAUSE_AT", "").rpartition("=")[::2]
    _FAULTS = bool(_CRASH_AT or _PAUSE_AT[0])


faults_from(os.environ)


def crash_point(name: str) -> None:
    if _FAULTS:
        _crash(name)


def _crash(name: str) -> None:
    global _crash_count
    if _PAUSE_AT[0] and name.startswith(_PAUSE_AT[0]):
        import time

        time.sleep(float(_PAUSE_AT[1] or 0))
    _crash_count += 1
    if _crash_count == _CRASH_AT:
        os.write(2, f"runner: crash point {_crash_count}: {name}\n".encode())
        os.kill(os.getpid(), 9)


def check_id(container_id: str) -> None:
    if not container_id:
        raise InvalidArgument("container id: must not be empty")
    if "/" in container_id or container_id in (".", "..") or "\0" in container_id:
        raise InvalidArgument(f"container id {container_id!r}: must not contain '/' or be '.' or '..'")
    if len(container_id) > 1024:
        raise InvalidArgument("container id: longer than 1024 characters")


def write_atomic(path: str, text: str) -> None:
    """Readers see the old file or the new one, never half of it."""
    tmp = f"{path}.tmp{os.getpid()}"
    fileio.create(tmp, text.encode())
    os.rename(tmp, path)


# The ID's directory appears and disappears in one rename, so that `<root>/<id>` is always a
# whole container (with its state.json) or nothing: a create fills a private directory and
# renames it to the ID; a delete renames the ID's directory away before emptying it. What a
# crash leaves of the private ones holds no more than files, and sweep() removes it.
CREATING = ".creating-"   # + creator pid-start time-thread: garbage once the creator is dead
DELETED = ".deleted-"     # + pid-thread: garbage at once


def proc_stat(pid: int):
    """(state letter, start time) of a process, or None when there is none."""
    try:
        data = fileio.read_once(f"/proc/{pid}/stat")
    except OSError:
        return None
    # (the fields after the command, split only as far as the start time, the 22nd: the
    # thirty after it are never looked at, and splitting them was a third of this call)
    rest = data[data.rindex(b")") + 2:].split(None, 20)
    return rest[0].decode(), int(rest[19])


def alive(pid: int, start_time: int | None) -> bool:
    """Whether `pid` is still the process that started at `start_time` (pids are reused)."""
    if pid <= 0:
        return False
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X") and (start_time is None or st[1] == start_time)


# state.json's layout: one compact JSON object; with cgroups, on two lines. The first holds
# every field but "cgroups" and "pause", a copy of the two paths that say whether the
# container is paused (is_paused's); the second, after HEAD_END, "cgroups" (two thirds of
# the file: each hierarchy's path, twice). `list` parses the first line alone (read_head):
# the cgroups were half of its JSON time. Any reader of the whole file sees one object;
# an older version's file (one line) is read whole.
HEAD_END = b',\n"cgroups":'


def state_text(state: dict) -> str:
    cg = state.get("cgroups")
    if not cg:
        if "pause" in state:  # (never stale: only ever written beside its cgroups)
            state = {k: v for k, v in state.items() if k != "pause"}
        return jsonio.dumps(state)
    head = {k: v for k, v in state.items() if k != "cgroups"}
    paths = cg.get("paths") or {}
    head["pause"] = {"paths": {"freezer": paths["freezer"]} if paths.get("freezer") else {},
                     "unified": cg.get("unified") or ""}
    return f"{jsonio.dumps(head)[:-1]}{HEAD_END.decode()}{jsonio.dumps(cg)}}}"


def read_head(data: bytes) -> dict:
    """A state file's first line as a state (without "cgroups"; with "pause"), or the
    whole state when it has one line, or when the second does not end as state_text
    ends it (cut short: the whole parse says it is damaged, as `state` would)."""
    end = data.find(HEAD_END)
    if end > 0 and data.endswith(b"}}"):
        return jsonio.loads(data[:end] + b"}")
    return jsonio.loads(data)


class StateDir:
    def __init__(self, root: str | None, container_id: str):
        check_id(container_id)
        self.root = root or default_root()
        self.id = container_id
        # (f-strings, not os.path.join, on the paths a `list` takes per container: 3 of the
        # 30 ms of a list of a thousand; the ID is checked to have no "/")
        self.path = f"{self.root.rstrip('/')}/{container_id}"

    def create(self, state: dict) -> "_Lock":
        """Claim the ID with `state` already in place (see CREATING): of two concurrent
        creates exactly one rename wins. Returns the container's lock, held (release with
        __exit__)."""
        import _thread

        tmp = os.path.join(self.root, f"{CREATING}{state.get('creator', os.getpid())}-"
                                      f"{state.get('creator_start')}-{_thread.get_ident()}")
        _rmtree(tmp)  # a crashed namesake's (pid reused): garbage
        try:
            os.mkdir(tmp, 0o711)
        except FileNotFoundError:  # the root's first container (the root is there after)
            make_root(self.root)
            os.mkdir(tmp, 0o711)
        try:
            lock = _Lock(self, new=True, path=tmp).__enter__()
            try:
                # no reader sees the private directory before the rename: written in place
                fileio.create(os.path.join(tmp, "state.json"), state_text(state).encode())
                crash_point("state dir made")
                os.rename(tmp, self.path)  # onto nothing, or a bare directory left by hand
            except BaseException:
                lock.__exit__()
                raise
        except OSError as e:
            _rmtree(tmp)
            if e.errno in (17, 39):  # EEXIST, ENOTEMPTY
                raise AlreadyExists(f"container with id {self.id!r} already exists") from None
            raise
        except BaseException:
            _rmtree(tmp)
            raise
        return lock

    def lock(self) -> "_Lock":
        """Serialise commands on this container: `with d.lock():`.
        NotFound if the container was deleted meanwhile."""
        return _Lock(self)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def write(self, state: dict) -> None:
        write_atomic(os.path.join(self.path, "state.json"), state_text(state))

    def read(self) -> dict:
        try:
            return jsonio.loads(fileio.read_once(f"{self.path}/state.json"))
        except (FileNotFoundError, NotADirectoryError):
            if os.path.isdir(self.path):  # not made by this runtime's create: left by hand
                raise DamagedState(f"container {self.id!r}: {self.path} has no state.json") from None
            raise NotFound(f"container {self.id!r} does not exist") from None
        except ValueError as e:
            raise DamagedState(f"container {self.id!r}: {self.path}/state.json is damaged ({e})") from None

    def remove(self) -> bool:
        """Free the ID at once (one rename, see DELETED), then remove the files. False if
        there was nothing to remove."""
        import _thread

        trash = os.path.join(self.root, f"{DELETED}{os.getpid()}-{_thread.get_ident()}")
        _rmtree(trash)
        try:
            os.rename(self.path, trash)
        except FileNotFoundError:
            return False
        crash_point("state dir renamed away")
        _rmtree(trash)
        return True


def sweep(root: str) -> list:
    """Remove what crashed creates and deletes left of their private directories (never a
    live create's); returns the paths removed."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.startswith(DELETED):
            pass
        elif name.startswith(CREATING):
            pid, _, rest = name[len(CREATING):].partition("-")
            start = rest.partition("-")[0]
            if pid.isdigit() and alive(int(pid), int(start) if start.isdigit() else None):
                continue
        else:
            continue
        path = os.path.join(root, name)
        _rmtree(path)
        out.append(path)
    return out


def _rmtree(path: str) -> None:
    """A state directory holds files (and notify.py's directory of files)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            _rmtree(os.path.join(path, name))
        crash_point(f"state dir: {name} removed")
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


class _Lock:
    def __init__(self, d: StateDir, new: bool = False, path: str = ""):
        self.d = d
        self.new = new
        self.path = os.path.join(path or d.path, ".lock")
        self.fd = -1

    def __enter__(self) -> "_Lock":
        # A POSIX record lock, not flock: a forked child does not inherit it, so the
        # container's init (which keeps our fds until it execs) cannot hold it for us.
        import fcntl

        for _ in range(100):
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                raise NotFound(f"container does not exist: {self.d.id}") from None
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            if self.new:
                return self
            # deleted while we waited (the directory renamed away), perhaps created anew:
            # only the lock of the directory now at the ID's path counts
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = -1
            if current == os.fstat(self.fd).st_ino:
                return self
            os.close(self.fd)
            if current == -1:
                raise NotFound(f"container does not exist: {self.d.id}")
        raise NotFound(f"container does not exist: {self.d.id}")

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # releases the lock
