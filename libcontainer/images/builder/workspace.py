"""A build's scratch space in the store: `builds/ID/` holds the overlay mounts of its
steps (upper, work, merged), the RUN containers' bundle and state, and a `lock` the build
holds (flock) while it lives. An interrupted build — SIGINT unwinds and cleans up; SIGKILL
cannot — leaves a directory whose lock nobody holds: the next build, and gc, find it and
remove its containers, unmount its mounts and delete it, so nothing trips a rerun."""
from __future__ import annotations

import fcntl
import os
import shutil
import uuid

from .. import driver as drivers


def _mounts_under(path: str) -> list:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def _clean(path: str) -> None:
    state = os.path.join(path, "state")
    if os.path.isdir(state):
        from ...recovery import force_delete

        for cid in os.listdir(state):
            try:
                force_delete(cid, root=state)
            except Exception:
                pass
    for mp in _mounts_under(path):
        try:
            drivers.unmount(mp)
        except Exception:
            import ctypes

            ctypes.CDLL(None, use_errno=True).umount2(mp.encode(), 2)  # MNT_DETACH
    shutil.rmtree(path, ignore_errors=True)


def sweep(store) -> list:
    """Remove the workspaces of builds that are gone; → their names."""
    base = store.path("builds")
    removed = []
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return removed
    for n in names:
        path = os.path.join(base, n)
        try:
            fd = os.open(os.path.join(path, "lock"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        except OSError:
            continue
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a build that is running
            _clean(path)
            removed.append(f"build workspace {n}")
        finally:
            if fd >= 0:
                os.close(fd)
    return removed


class Mount:
    """An overlay of `lowers` (diff dirs, bottom first) with a fresh upper dir, mounted."""

    def __init__(self, ws: "Workspace", lowers: list, rootless: bool):
        self.dir = os.path.join(ws.path, f"m{ws.next()}")
        os.mkdir(self.dir, 0o700)
        self.upper = os.path.join(self.dir, "upper")
        self.work = os.path.join(self.dir, "work")
        self.merged = os.path.join(self.dir, "merged")
        for d in (self.upper, self.merged):
            os.mkdir(d, 0o755)
        os.mkdir(self.work, 0o700)
        lows = list(reversed(lowers))
        if not lows:
            lows = [os.path.join(self.dir, "empty")]
            os.mkdir(lows[0], 0o755)
        else:
            drivers.copy_root_attrs(lowers[-1], self.upper, rootless)
        self.mounted = False
        drivers.mount_overlay(lows, self.upper, self.work, self.merged, rootless)
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            drivers.unmount(self.merged)
            self.mounted = False

    def take_upper(self) -> str:
        """Unmount; → the upper dir, now the caller's (the layer to be)."""
        self.unmount()
        return self.upper

    def discard(self) -> None:
        self.unmount()
        shutil.rmtree(self.dir, ignore_errors=True)


class ReadOnly:
    """The root of an image or a finished stage, to copy from (COPY --from): an overlay of
    its layers without an upper dir (read-only)."""

    def __init__(self, ws: "Workspace", lowers: list):
        self.dir = os.path.join(ws.path, f"r{ws.next()}")
        os.mkdir(self.dir, 0o700)
        self.merged = os.path.join(self.dir, "merged")
        os.mkdir(self.merged, 0o755)
        empty = os.path.join(self.dir, "empty")
        os.mkdir(empty, 0o755)
        lows = list(reversed(lowers)) + [empty]  # overlay wants two lowers without an upper
        opts = "lowerdir=" + ":".join(lows)
        import ctypes

        if ctypes.CDLL(None, use_errno=True).mount(b"overlay", self.merged.encode(), b"overlay",
                                                   1, opts.encode()) != 0:  # MS_RDONLY
            e = ctypes.get_errno()
            raise OSError(e, f"mount overlay: {os.strerror(e)}", self.merged)
        self.mounted = True

    def discard(self) -> None:
        if self.mounted:
            drivers.unmount(self.merged)
            self.mounted = False
        shutil.rmtree(self.dir, ignore_errors=True)


class Workspace:
    def __init__(self, store):
        self.store = store
        os.makedirs(store.path("builds"), mode=0o700, exist_ok=True)
        sweep(store)
        self.path = store.path("builds", uuid.uuid4().hex[:16])
        os.mkdir(self.path, 0o700)
        self.lock = os.open(os.path.join(self.path, "lock"),
                            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.count = 0
        self.open: list = []

    def next(self) -> int:
        self.count += 1
        return self.count

    def mount(self, lowers: list) -> Mount:
        m = Mount(self, lowers, self.store.rootless)
        self.open.append(m)
        return m

    def readonly(self, lowers: list) -> ReadOnly:
        r = ReadOnly(self, lowers)
        self.open.append(r)
        return r

    def close(self) -> None:
        for m in reversed(self.open):
            try:
                m.discard()
            except Exception:
                pass
        _clean(self.path)
        os.close(self.lock)
