"""`docker diff`: what a container changed in its root filesystem, as dockerd reports it
(moby's archive.ChangesDirs, the "naive" diff its overlay2 driver uses on kernels with
overlay redirect_dir, as here): Kind 0 modified, 1 added, 2 deleted. A path is compared with
the image's view of it: an entry that is new is added (and all below it), one that is gone
is deleted (its subtree is not listed), one whose mode, owner, rdev — and for a non-directory
size or mtime, or its security.capability — differ is modified, and a directory with a
change below it is listed as modified before those changes.

Only what the overlay's upper dir holds can differ, so that is what is walked (not the two
whole trees dockerd compares); the image's view of a path is read through its layers (top
first, their whiteouts and opaque directories honoured). Paths dockerd's init layer holds
(mount points it makes for /etc/hosts, /etc/resolv.conf…) are not the container's changes.
Directory entries in byte order (dockerd's come in Go map order, i.e. any)."""
from __future__ import annotations

import os
import stat

from .driver import _is_opaque

MODIFY, ADD, DELETE = 0, 1, 2
# dockerd's init layer: made for every container below its read-write layer
INIT_PATHS = frozenset(("/dev", "/dev/pts", "/dev/shm", "/dev/console", "/proc", "/sys",
                        "/.dockerenv", "/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
                        "/etc/mtab"))
_CAP = "security.capability"


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _Lower:
    """The image's merged view of a path, read from its layer dirs (top first)."""

    def __init__(self, layers: list):
        self.layers = layers

    def _hidden(self, layer: str, rel: str) -> bool:
        """Whether an ancestor of rel is opaque (or not a directory) in this layer."""
        parts = rel.strip("/").split("/")[:-1]
        p = layer
        for part in parts:
            p = os.path.join(p, part)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(st.st_mode) or _is_opaque(p):
                return True
        return False

    def _layers_with(self, rel: str):
        """(layer's path of rel, its lstat) for each layer, top first, that has rel, until
        one hides it below (an opaque or non-directory ancestor)."""
        for layer in self.layers:
            p = os.path.join(layer, rel.lstrip("/"))
            try:
                yield p, os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                if self._hidden(layer, rel):
                    return

    def lookup(self, rel: str):
        """(stat, path) of rel in the view, or None."""
        for p, st in self._layers_with(rel):
            return None if _whiteout(st) else (st, p)
        return None

    def children(self, rel: str) -> set:
        names: set = set()
        gone: set = set()
        for p, st in self._layers_with(rel):
            if not stat.S_ISDIR(st.st_mode):
                break
            for n in os.listdir(p):
                if n not in names and n not in gone:
                    (gone if _whiteout(os.lstat(os.path.join(p, n))) else names).add(n)
            if _is_opaque(p):
                break
        return names


def _cap(path: str) -> bytes:
    try:
        return os.getxattr(path, _CAP, follow_symlinks=False)
    except OSError:
        return b""


def _different(old, old_path: str, new, new_path: str) -> bool:
    """moby's statDifferent (+ the capability xattr)."""
    if (old.st_mode != new.st_mode or old.st_uid != new.st_uid or old.st_gid != new.st_gid
            or old.st_rdev != new.st_rdev):
        return True
    if not stat.S_ISDIR(old.st_mode):
        so, no = divmod(old.st_mtime_ns, 1_000_000_000)
        sn, nn = divmod(new.st_mtime_ns, 1_000_000_000)
        same_time = old.st_mtime_ns == new.st_mtime_ns or (so == sn and (no == 0 or nn == 0))
        if not same_time or old.st_size != new.st_size:
            return True
    return _cap(old_path) != _cap(new_path)


def changes(upper: str, lowers: list) -> list:
    """[{"Path", "Kind"}] of an overlay upper dir over layer dirs `lowers` (top first)."""
    lower = _Lower(lowers)
    out: list = []

    def walk(rel: str, added: bool) -> None:
        """The changes below directory rel of the upper dir (`added`: rel is new)."""
        full = os.path.join(upper, rel.lstrip("/"))
        names = sorted(os.listdir(full))
        upper_names = set()
        for n in names:
            path = rel.rstrip("/") + "/" + n
            p = os.path.join(full, n)
            st = os.lstat(p)
            if _whiteout(st):
                if not added and lower.lookup(path) is not None:
                    out.append({"Path": path, "Kind": DELETE})
                continue
            upper_names.add(n)
            old = None if added else lower.lookup(path)
            if old is None and path in INIT_PATHS:
                continue  # dockerd's init layer has it: not the container's
            isdir = stat.S_ISDIR(st.st_mode)
            at = len(out)
            if old is None:
                out.append({"Path": path, "Kind": ADD})
                listed = True
            else:
                listed = _different(old[0], old[1], st, p)
                if listed:
                    out.append({"Path": path, "Kind": MODIFY})
            if isdir:
                opaque = old is not None and _is_opaque(p)
                walk(path, old is None or not stat.S_ISDIR(old[0].st_mode))
                if opaque:
                    kept = set(os.listdir(p))
                    for gone in sorted(lower.children(path) - kept):
                        out.append({"Path": path + "/" + gone, "Kind": DELETE})
                if len(out) > at and not listed:
                    out.insert(at, {"Path": path, "Kind": MODIFY})

    walk("/", False)
    return out


def _overlay_of(bundle: str, storage: str | None):
    """(store, mount record, upper dir) of a bundle made from an image (bundle.create)."""
    from .bundle import _key, _read
    from .errors import ImageError
    from .store import Store

    store = Store(storage)
    bundle = os.path.abspath(bundle)
    key = _key(bundle)
    rec = _read(store.path("mounts", key + ".json"))
    if not rec:
        raise ImageError(f"{bundle} was not made from an image of the store {store.root}")
    if rec.get("driver") != "overlay":
        raise ImageError(f"{bundle}: its rootfs is a copy (driver {rec.get('driver')}); "
                         "its changes need the overlay driver")
    return store, rec, store.path("containers", key, "upper")


def bundle_changes(bundle: str, storage: str | None = None) -> list:
    """The changes of a bundle made from an image of the store (images.bundle.create)."""
    store, rec, upper = _overlay_of(bundle, storage)
    with store.shared():
        lowers = [store.layer_dir(d) for d in reversed(rec.get("layers") or [])]
        return changes(upper, lowers)


def rw_size(bundle: str, storage: str | None = None) -> int:
    """Bytes of the files a bundle's container wrote (its upper dir; a hard link once), as
    dockerd's SizeRw; 0 where there is none."""
    try:
        _, _, upper = _overlay_of(bundle, storage)
    except Exception:
        return 0
    seen: set = set()
    total = 0
    for base, _dirs, files in os.walk(upper):
        for n in files:
            try:
                st = os.lstat(os.path.join(base, n))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
