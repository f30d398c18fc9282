"""A layer directory in overlay form (an overlay upper dir, or a layer of the store) → the
OCI layer tar, as containers/storage and Docker write it from an overlay upper dir: a 0/0
character device is the whiteout `.wh.NAME`, a directory with the opaque xattr is followed
by its `.wh..wh..opq` marker, hard links are written once and then as links, xattrs
(security.capability…) as SCHILY.xattr records, owners numeric, no user or group names.

The stream is a function of the tree only: entries in byte order of their names, mtimes in
whole seconds, no atime/ctime, so writing the same directory twice gives the same bytes and
the same diff id (the store keeps layers unpacked and writes their tars again for a push).
`timestamp` first sets every entry's mtime to it (buildah's --timestamp), in the directory
itself, so that later writes agree."""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile

from .driver import OPAQUE_XATTRS
from .driver import _is_opaque as _opaque
from .layer import OPAQUE, WHITEOUT

_CHUNK = 1 << 20
# overlayfs' own bookkeeping: never part of an image
_OVERLAY_PREFIXES = ("trusted.overlay.", "user.overlay.")


class _Sink:
    """A write-only file for tarfile: hashes and counts, and passes bytes on if asked."""

    def __init__(self, out=None):
        self.hash = hashlib.sha256()
        self.size = 0
        self.out = out

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def set_times(root: str, timestamp: int) -> None:
    """Every entry's mtime (and atime) := timestamp, symlinks themselves included."""
    ns = (timestamp * 1_000_000_000,) * 2
    for base, dirs, files in os.walk(root):
        for n in dirs + files:
            os.utime(os.path.join(base, n), ns=ns, follow_symlinks=False)
    os.utime(root, ns=ns)


def _xattrs(path: str) -> dict:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out = {}
    for n in sorted(names):
        if n.startswith(_OVERLAY_PREFIXES):
            continue
        try:
            value = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + n] = value.decode("utf-8", "surrogateescape")
    return out


def _info(name: str, st, kind: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = int(st.st_mtime)
    return ti


class Stats:
    def __init__(self, digest: str, size: int, entries: int):
        self.diff_id, self.size, self.entries = digest, size, entries


def write_tar(root: str, out=None) -> Stats:
    """The layer tar of `root`, written to `out` (any .write(bytes)) if given; → its digest
    (the diff id), size and entry count."""
    sink = _Sink(out)
    tf = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape", bufsize=_CHUNK)
    links: dict = {}
    entries = 0

    def walk(rel: str) -> None:
        nonlocal entries
        path = os.path.join(root, rel) if rel else root
        names = sorted(os.listdir(path), key=os.fsencode)
        for n in names:
            r = f"{rel}/{n}" if rel else n
            p = os.path.join(path, n)
            st = os.lstat(p)
            mode = st.st_mode
            if stat.S_ISCHR(mode) and st.st_rdev == 0:  # overlay whiteout → OCI whiteout
                ti = _info(f"{rel}/{WHITEOUT}{n}" if rel else WHITEOUT + n, st, tarfile.REGTYPE)
                ti.mode = 0o600
                tf.addfile(ti)
                entries += 1
                continue
            if stat.S_ISDIR(mode):
                ti = _info(r + "/", st, tarfile.DIRTYPE)
                ti.pax_headers = _xattrs(p)
                tf.addfile(ti)
                entries += 1
                if _opaque(p):
                    wo = _info(f"{r}/{OPAQUE}", st, tarfile.REGTYPE)
                    wo.mode = 0o600
                    tf.addfile(wo)
                    entries += 1
                walk(r)
                continue
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISDIR(mode) and st.st_nlink > 1 and key in links:
                ti = _info(r, st, tarfile.LNKTYPE)
                ti.linkname = links[key]
                ti.mode = stat.S_IMODE(mode)
                tf.addfile(ti)
                entries += 1
                continue
            if stat.S_ISREG(mode):
                ti = _info(r, st, tarfile.REGTYPE)
                ti.size = st.st_size
                ti.pax_headers = _xattrs(p)
                with open(p, "rb") as f:
                    tf.addfile(ti, f)
            elif stat.S_ISLNK(mode):
                ti = _info(r, st, tarfile.SYMTYPE)
                ti.linkname = os.readlink(p)
                ti.pax_headers = _xattrs(p)
                tf.addfile(ti)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                ti = _info(r, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                ti.pax_headers = _xattrs(p)
                tf.addfile(ti)
            elif stat.S_ISFIFO(mode):
                ti = _info(r, st, tarfile.FIFOTYPE)
                ti.pax_headers = _xattrs(p)
                tf.addfile(ti)
            else:
                continue  # sockets: nothing an image carries (Docker skips them too)
            entries += 1
            if st.st_nlink > 1:
                links[key] = r

    walk("")
    tf.close()
    return Stats(sink.digest(), sink.size, entries)


def strip_overlay_xattrs(root: str) -> None:
    """An upper dir carries overlayfs' own marks (origin, impure, …) besides the opaque one:
    a layer keeps only what an unpacked layer has, so that it can be a lower dir later."""
    for base, dirs, files in os.walk(root):
        for n in [""] + dirs:
            p = os.path.join(base, n) if n else base
            try:
                names = os.listxattr(p, follow_symlinks=False)
            except OSError:
                continue
            for x in names:
                if x.startswith(_OVERLAY_PREFIXES) and x not in OPAQUE_XATTRS:
                    os.removexattr(p, x, follow_symlinks=False)
                elif x in OPAQUE_XATTRS and os.getxattr(p, x, follow_symlinks=False) != b"y":
                    os.removexattr(p, x, follow_symlinks=False)
