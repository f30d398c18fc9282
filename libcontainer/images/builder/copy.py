"""COPY and ADD into a stage's root (the overlay being built, mounted): Docker's rules for
where a source lands (a directory's contents go into the destination; several sources need
a destination ending in '/'), owners 0:0 unless --chown (names from the stage's own
/etc/passwd and /etc/group; a user alone gives the same gid), --chmod, modes and mtimes
kept, hard links between copied files kept, symlinks copied as links. Every destination
path is resolved inside the root (a symlink in the image cannot send a file out of it).
ADD unpacks a local tar archive (plain, gzip, bzip2, xz, zstd) into the destination."""
from __future__ import annotations

import bz2
import lzma
import os
import posixpath
import shutil
import stat

from ..layer import Unpacker, decompressed
from ..errors import ImageError
from .context import Ignore, resolve_in, walk_included
from .dockerfile import BuildError


class Target:
    def __init__(self, rootfs: str, chown: tuple | None, chmod: int | None):
        self.rootfs = rootfs
        self.chown = chown
        self.chmod = chmod
        self.links: dict = {}

    def host(self, path: str) -> str:
        return resolve_in(self.rootfs, path)

    def owner(self, st) -> tuple:
        return self.chown if self.chown is not None else (0, 0)

    def mkdirs(self, path: str) -> str:
        """The directory `path` (absolute, in the root), made with its parents if missing
        (0755, owned by --chown's ids or root); → its host path."""
        done = "/"
        for comp in [p for p in path.split("/") if p]:
            done = posixpath.join(done, comp)
            h = self.host(done)
            try:
                st = os.stat(h)
                if not stat.S_ISDIR(st.st_mode):
                    raise BuildError(f"{done} is not a directory in the image")
            except FileNotFoundError:
                os.mkdir(h, 0o755)
                os.chown(h, *(self.chown or (0, 0)))
        return self.host(path)

    def place(self, src: str, st, dest_host: str) -> None:
        """One non-directory entry."""
        try:
            dst = os.lstat(dest_host)
            if stat.S_ISDIR(dst.st_mode):
                raise BuildError(f"cannot replace the directory {os.path.relpath(dest_host, self.rootfs)} "
                                 "with a file")
            os.unlink(dest_host)
        except FileNotFoundError:
            pass
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) and key in self.links:
            os.link(self.links[key], dest_host, follow_symlinks=False)
            return
        uid, gid = self.owner(st)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dest_host)
            os.chown(dest_host, uid, gid, follow_symlinks=False)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(src, dest_host, follow_symlinks=False)
            os.chown(dest_host, uid, gid)
            os.chmod(dest_host, self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode))
        elif stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            os.mknod(dest_host, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
            os.chown(dest_host, uid, gid)
            os.chmod(dest_host, self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode))
        else:
            return  # sockets
        os.utime(dest_host, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        if st.st_nlink > 1:
            self.links[key] = dest_host

    def dir_attrs(self, st, dest_host: str) -> None:
        os.chown(dest_host, *self.owner(st))
        os.chmod(dest_host, self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode))

    def tree(self, src: str, dest: str, entries) -> None:
        """A directory's contents (entries: (sub, host path, lstat)) into `dest`."""
        made = []
        for sub, p, st in entries:
            d = posixpath.join(dest, sub)
            h = self.host(d)
            if stat.S_ISDIR(st.st_mode):
                try:
                    if not stat.S_ISDIR(os.lstat(h).st_mode):
                        os.unlink(h)
                        raise FileNotFoundError
                except FileNotFoundError:
                    os.mkdir(h, 0o700)
                self.dir_attrs(st, h)
                made.append((h, st))
            else:
                self.place(p, st, h)
        for h, st in reversed(made):
            os.utime(h, ns=(st.st_mtime_ns, st.st_mtime_ns))


def _open_archive(path: str):
    """(tar stream, file) if `path` is a tar archive (plain, gzip, bzip2, xz, zstd), else None."""
    f = open(path, "rb")
    head = f.read(6)
    f.seek(0)
    if head[:3] == b"BZh":
        stream = bz2.BZ2File(f)
    elif head == b"\xfd7zXZ\x00":
        stream = lzma.LZMAFile(f)
    else:
        stream = decompressed(f)  # gzip, zstd, or the file as it is
    try:
        block = stream.read(512)
    except Exception:  # not what its magic said
        block = b""
    f.close()
    if len(block) < 262 or block[257:262] != b"ustar":
        return None
    f = open(path, "rb")
    if head[:3] == b"BZh":
        return bz2.BZ2File(f), f
    if head == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(f), f
    return decompressed(f), f


def copy(target: Target, found: list, dest: str, workdir: str, what: str, context: str = "",
         ignore: Ignore | None = None, unpack: bool = False, several: bool = False) -> None:
    """found: [(rel, host path)] of the sources (already checked to be in their root)."""
    ignore = ignore or Ignore([])
    if not dest.startswith("/"):
        dest = posixpath.join(workdir or "/", dest)
    as_dir = dest.endswith("/") or dest.endswith("/.")
    if (several or len(found) > 1) and not as_dir:
        raise BuildError(f"{what}: with more than one source, the destination must be a "
                         f"directory and end with a /")
    dest = posixpath.normpath(dest)
    for rel, path in found:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            existed = os.path.isdir(target.host(dest))
            h = target.mkdirs(dest)
            if not existed and dest != "/":
                target.dir_attrs(st, h)
            target.tree(path, dest, walk_included(context, rel, path, ignore))
            continue
        if unpack:
            opened = _open_archive(path)
            if opened is not None:
                stream, f = opened
                h = target.mkdirs(dest)
                u = Unpacker(h, rootless=False)
                try:
                    u.unpack(stream)
                except ImageError as e:
                    raise BuildError(f"{what}: {rel}: {e}") from None
                finally:
                    u.close()
                    f.close()
                continue
        h = target.host(dest)
        if as_dir or os.path.isdir(h):
            target.mkdirs(dest)
            d = posixpath.join(dest, posixpath.basename(rel) or posixpath.basename(path))
        else:
            target.mkdirs(posixpath.dirname(dest))
            d = dest
        target.place(path, os.lstat(path) if os.path.islink(path) else st, target.host(d))
