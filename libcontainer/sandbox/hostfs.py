"""The host's side of a sandbox's files: a private directory per Sandbox, a scratch tmpfs
per run (sized: the writable layer and the default workdir live in it), the overlay of the
image under it, and workdirs whose files are written and read without following a link
the sandboxed code planted.

Layout (root; an unprivileged user's under $XDG_RUNTIME_DIR):
    /run/runner-sandbox/<pid>-<n>/          a private mount; <pid> finds what a killed
        state/                              process left (sweep)
        slot<i>/bundle/config.json          one slot per run at once
        slot<i>/bundle/rootfs               the overlay (lower: the image; upper: scratch)
        slot<i>/scratch                     tmpfs: upper/ work/ box/
        wd<j>                               a workdir() tmpfs
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat

from ..errors import ContainerError, InvalidArgument

MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
MNT_DETACH = 2
_libc_handle: list = []


def _libc():
    if not _libc_handle:
        _libc_handle.append(ctypes.CDLL(None, use_errno=True))
    return _libc_handle[0]


def mount(source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
    if _libc().mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                     flags, data.encode() if data else None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {fstype or 'bind'} on {target}: {os.strerror(e)}")


def umount(target: str) -> None:
    """Detach `target` (lazily: a process that still holds a file does not keep the rest)."""
    if _libc().umount2(target.encode(), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):  # not (any more) a mount point
            raise OSError(e, f"umount {target}: {os.strerror(e)}")


def base_root() -> str:
    if os.geteuid() == 0:
        return "/run/runner-sandbox"
    from ..state import default_root

    return os.path.join(os.path.dirname(default_root().rstrip("/")), "runner-sandbox")


def _mounts_under(path: str) -> list:
    """Mount points at or below `path`, deepest first."""
    out = []
    prefix = path.rstrip("/") + "/"
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split()[4].decode().replace("\\040", " ")
            if mp == path or mp.startswith(prefix):
                out.append(mp)
    return sorted(out, key=lambda p: -p.count("/"))


def remove_tree(path: str) -> None:
    """Unmount whatever is mounted under `path`, then remove it."""
    if not os.path.lexists(path):
        return
    for mp in _mounts_under(path):
        umount(mp)
    shutil.rmtree(path, ignore_errors=True)


def sweep(root: str, report=None) -> list:
    """What Sandboxes of dead processes left under `root` (their containers, mounts, dirs)
    is removed; → the directories removed."""
    gone = []
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return gone
    for name in names:
        pid, _, _ = name.partition("-")
        path = os.path.join(root, name)
        if not pid.isdigit() or _owner_alive(path, int(pid)):
            continue
        _force_delete_all(os.path.join(path, "state"))
        remove_tree(path)
        gone.append(path)
        if report:
            report(f"removed {path} (left by process {pid})")
    return gone


def _force_delete_all(state_root: str) -> None:
    try:
        ids = [n for n in os.listdir(state_root) if not n.startswith(".")]
    except FileNotFoundError:
        return
    from ..recovery import force_delete

    for cid in ids:
        try:
            force_delete(cid, root=state_root)
        except ContainerError:
            pass


LOCK = "owner.lock"


def hold(path: str) -> int:
    """The owner's lock on a Sandbox directory, held (the fd) while the Sandbox lives: a
    sweep from any process, in any pid namespace, sees that its owner is alive."""
    import fcntl

    fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _owner_alive(path: str, pid: int) -> bool:
    import fcntl

    try:
        fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return _pid_alive(pid)  # being made (the lock comes first thing), or not ours
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_private_dir(path: str) -> None:
    """`path` as a tmpfs of its own, private: what is mounted under it is not propagated
    to the host's other mount namespaces (as dockerd makes its overlay directory), and the
    containers' state and config files cost no disk journal (a create or unlink on /run's
    ext4 here takes 0.4-4 ms under load)."""
    os.makedirs(path, mode=0o711)
    if os.geteuid() == 0:
        try:
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=711,size=64m")
            mount("", path, "", MS_PRIVATE)
        except BaseException:
            umount(path)
            os.rmdir(path)
            raise


def mount_tmpfs(target: str, size: int | None, mode: int = 0o755, uid: int = 0,
                gid: int = 0) -> None:
    data = f"mode={mode:o}"
    if size is not None:
        data += f",size={size}"
    if uid or gid:
        data += f",uid={uid},gid={gid}"
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, data)


def mount_overlay(lowers: list, upper: str, work: str, target: str) -> None:
    opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    mount("overlay", target, "overlay", 0, opts)


# ---- files in a workdir, never through a planted link -----------------------------------

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(name: str, field: str = "name") -> list:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{field}: {name!r} is not a relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts or "\0" in name:
        raise InvalidArgument(f"{field}: {name!r} must be a relative path inside the workdir "
                              "(no '..', not absolute)")
    return parts


def _walk(root_fd: int, parts: list, create: bool, uid: int, gid: int) -> int:
    """An fd of the directory holding parts[-1], each step opened with O_NOFOLLOW: a link
    anywhere on the way is refused (ELOOP/ENOTDIR), never followed."""
    fd = os.dup(root_fd)
    try:
        for p in parts[:-1]:
            if create:
                try:
                    os.mkdir(p, 0o755, dir_fd=fd)
                    os.chown(p, uid, gid, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
            nfd = os.open(p, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def write_file(root: str, name: str, data, uid: int, gid: int, mode: int = 0o644) -> None:
    parts = _parts(name, f"files[{name!r}]")
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"files[{name!r}]: want bytes or str, not {type(data).__name__}")
    rfd = os.open(root, _DIR)
    try:
        dfd = _walk(rfd, parts, True, uid, gid)
    finally:
        os.close(rfd)
    try:
        try:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW |
                         os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dfd)
        except OSError as e:
            raise InvalidArgument(f"files[{name!r}]: cannot write it: {e.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidArgument(f"files[{name!r}]: exists and is not a regular file")
            os.fchown(fd, uid, gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


def read_file(root: str, name: str, limit: int | None = None) -> bytes:
    """A regular file of the workdir; a symlink (or a fifo, a device) anywhere on the path
    is an error, never followed: the sandboxed code may have planted it."""
    parts = _parts(name)
    rfd = os.open(root, _DIR)
    try:
        try:
            dfd = _walk(rfd, parts, False, 0, 0)
        except OSError as e:
            raise _not_readable(name, e) from None
    finally:
        os.close(rfd)
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dfd)
        except OSError as e:
            raise _not_readable(name, e) from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{name!r} is not a regular file of the workdir")
        chunks, left = [], st.st_size if limit is None else min(st.st_size, limit)
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def list_dir(root: str, name: str = ".") -> list:
    """The names in a directory of the workdir, reached without following a link."""
    parts = [] if name in (".", "") else _parts(name)
    rfd = os.open(root, _DIR)
    try:
        try:
            fd = _walk(rfd, parts + ["."], False, 0, 0)
        except OSError as e:
            raise _not_readable(name, e) from None
    finally:
        os.close(rfd)
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def _not_readable(name: str, e: OSError) -> Exception:
    if e.errno == errno.ENOENT:
        return FileNotFoundError(errno.ENOENT, f"{name!r}: no such file in the workdir")
    if e.errno in (errno.ELOOP, errno.ENOTDIR):
        return InvalidArgument(f"{name!r}: a symbolic link (or not a directory) is on the "
                               "path; the workdir's files are read without following links")
    return OSError(e.errno, f"{name!r}: {e.strerror}")
