"""The store's locks and its tmp/ entries: a flock on a file (the store's `lock`) and
directories under tmp/ owned by the process that holds their flock, removed by the next store
operation once that process is gone (`reap_tmp`)."""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time

_HALF_MADE_AGE = 600  # s: a `.mk-*` entry older than this lost its maker in its first instant


class _Held:
    """An fd whose flock lasts until release() (or the end of a `with`)."""

    fd = -1

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class _Flock(_Held):
    def __init__(self, path: str, exclusive: bool):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)


class TempDir(_Held):
    """A directory under tmp/ owned by this process for as long as it holds its flock: the
    kernel drops the lock when the owner dies (SIGKILL included), and the next store
    operation removes what is left (`Store.reap`). Made as `.mk-*`, locked, then renamed to
    its name, so no reaper sees it unlocked."""

    def __init__(self, tmp_root: str, prefix: str):
        made = tempfile.mkdtemp(prefix=".mk-", dir=tmp_root)
        self.fd = os.open(made, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.path = os.path.join(tmp_root, prefix + os.path.basename(made)[4:])
        os.rename(made, self.path)

    def release(self, remove: bool = True) -> None:
        if remove and os.path.lexists(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        super().release()


def reap_tmp(tmp_root: str) -> list:
    """Remove entries of tmp/ whose owner is gone (their flock is free); → their names."""
    gone = []
    try:
        names = os.listdir(tmp_root)
    except FileNotFoundError:
        return gone
    for n in names:
        p = os.path.join(tmp_root, n)
        if n.startswith(".mk-"):
            try:
                if time.time() - os.lstat(p).st_mtime > _HALF_MADE_AGE:
                    shutil.rmtree(p, ignore_errors=True)
                    gone.append(n)
            except OSError:
                pass
            continue
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:  # a file or symlink left by an older version: nobody owns it
            try:
                os.unlink(p)
                gone.append(n)
            except OSError:
                pass
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its owner is alive
        finally:
            os.close(fd)  # our probe's lock goes with the fd
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.unlink(p)
        gone.append(n)
    return gone
