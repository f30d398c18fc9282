"""The state directory: ``<root>/<id>/state.json``, written atomically, one per container."""
from __future__ import annotations

import os

from . import jsonio
from .errors import AlreadyExists, DamagedState, InvalidArgument, NotFound

DEFAULT_ROOT = "/run/runner"

# Fault injection (tests/integration/test_crash_faults.py): RUNNER_CRASH_AT=K makes the runtime
# SIGKILL itself at the K-th crash_point() it passes, as a crash or an impatient caller
# would. Unset, a crash point costs one comparison: no syscall, no import.
_crash_env = os.environ.get("RUNNER_CRASH_AT", "")
_CRASH_AT = int(_crash_env) if _crash_env.isdigit() else 0
_crash_count = 0


def crash_point(name: str) -> None:
    if _CRASH_AT:
        _crash(name)


def _crash(name: str) -> None:
    global _crash_count
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
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


class StateDir:
    def __init__(self, root: str, container_id: str):
        check_id(container_id)
        self.root = root
        self.id = container_id
        self.path = os.path.join(root, container_id)

    def create(self) -> "_Lock":
        """Claim the ID: mkdir is atomic, so of two concurrent creates exactly one wins.
        Returns the container's lock, held (release with __exit__)."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id {self.id!r} already exists") from None
        crash_point("state dir made")
        return _Lock(self, new=True).__enter__()

    def lock(self) -> "_Lock":
        """Serialise commands on this container: `with d.lock():`.
        NotFound if the container was deleted meanwhile."""
        return _Lock(self)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def write(self, state: dict) -> None:
        write_atomic(os.path.join(self.path, "state.json"), jsonio.dumps(state))

    def read(self) -> dict:
        try:
            with open(os.path.join(self.path, "state.json"), "rb") as f:
                return jsonio.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container {self.id!r} does not exist") from None
        except ValueError as e:
            raise DamagedState(f"container {self.id!r}: {self.path}/state.json is damaged ({e})") from None

    def remove(self) -> None:
        try:
            for name in os.listdir(self.path):
                os.unlink(os.path.join(self.path, name))
                crash_point(f"state dir: {name} removed")
            os.rmdir(self.path)
        except FileNotFoundError:
            pass


class _Lock:
    def __init__(self, d: StateDir, new: bool = False):
        self.d = d
        self.new = new
        self.fd = -1

    def __enter__(self) -> "_Lock":
        # A POSIX record lock, not flock: a forked child does not inherit it, so the
        # container's init (which keeps our fds until it execs) cannot hold it for us.
        import fcntl

        try:
            self.fd = os.open(os.path.join(self.d.path, ".lock"),
                              os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise NotFound(f"container does not exist: {self.d.id}") from None
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        if not self.new and not os.path.exists(os.path.join(self.d.path, "state.json")):
            os.close(self.fd)  # removed while we waited
            raise NotFound(f"container does not exist: {self.d.id}")
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # releases the lock
