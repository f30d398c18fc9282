"""Unpacking one layer into its own directory, in overlay form, treating the tar as hostile.

Every path is walked from the layer's root one component at a time with O_NOFOLLOW, so no
entry can reach outside the directory: not with `..`, not as an absolute path, not through a
symlink an earlier entry made (refused, naming the entry), not through a hard link. An entry
that names an existing path replaces it (unlinked first, never written through). OCI
whiteouts become what overlayfs reads: `.wh.NAME` a 0/0 character device NAME, the opaque
marker `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` (`user.overlay.opaque` when the
store is used without root, for an overlay mounted with `userxattr`)."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
import zlib

from .errors import ImageError, LayerRefused

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class HashingReader:
    """Reads through, hashing what passes (sha256) and counting it."""

    def __init__(self, f):
        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Gunzip:
    """gzip members one after another (as gzip(1) and Go's reader take them), on zlib
    directly; the output per input chunk is bounded (a decompression bomb cannot fill RAM)."""

    def __init__(self, f):
        self.f = f
        self.d = zlib.decompressobj(wbits=31)
        self.buf = b""
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        n = _CHUNK if n is None or n < 0 else n
        try:
            while len(self.buf) < n and not self.eof:
                if self.d.eof:
                    rest = self.d.unused_data or self.f.read(_CHUNK)
                    if not rest:
                        self.eof = True
                        break
                    self.d = zlib.decompressobj(wbits=31)
                    self.buf += self.d.decompress(rest, 4 * _CHUNK)
                    continue
                raw = self.d.unconsumed_tail or self.f.read(_CHUNK)
                if not raw:
                    raise ImageError("layer: truncated gzip stream")
                self.buf += self.d.decompress(raw, 4 * _CHUNK)
        except zlib.error as e:
            raise ImageError(f"layer: broken gzip stream: {e}") from None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class _Peek:
    def __init__(self, f, head: bytes):
        self.f, self.head = f, head

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out = self.head if n < 0 else self.head[:n]
            self.head = self.head[len(out):]
            return out
        return self.f.read(n)


def decompressed(f):
    """The tar stream of a layer blob: gzip and zstd by their magic, else as is."""
    head = f.read(4)
    f = _Peek(f, head)
    if head[:2] == b"\x1f\x8b":
        return _Gunzip(f)
    if head == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise ImageError("layer: zstd-compressed, and the zstandard package is not "
                             "installed (pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(f, read_size=_CHUNK)
    return f


def clean_path(name: str, entry: str, what: str = "path") -> list:
    """The components of a path inside the layer; `..` and absolute paths are refused."""
    if name.startswith("/"):
        raise LayerRefused(entry, f"absolute {what} (an image layer holds relative paths only)")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerRefused(entry, f"'..' in the {what} would leave the layer")
    return parts


def _forbidden_xattr(name: str) -> bool:
    # overlayfs acts on these (redirect, metacopy, origin…): an image may not set them
    return name.startswith(("trusted.overlay.", "user.overlay."))


class Unpacker:
    def __init__(self, root: str, rootless: bool, split=None):
        self.root = root
        self.split = split  # a tarsplit.Recorder: told where each file's content lies
        self.rootless = rootless
        self.opaque_xattr = "user.overlay.opaque" if rootless else "trusted.overlay.opaque"
        self.rootfd = os.open(root, _DIR_FLAGS)
        self._cached: tuple = ((), -1)
        self.dirs: list = []
        self.skipped_devices: list = []
        self.entries = 0

    def close(self) -> None:
        self._drop_cache()
        os.close(self.rootfd)

    def _drop_cache(self) -> None:
        if self._cached[1] >= 0:
            os.close(self._cached[1])
        self._cached = ((), -1)

    def _open_dir(self, parts: list, entry: str, create: bool) -> int:
        """An fd of the directory `parts`, walked without following any symlink; the caller
        must not close it (it is cached for the next entry, which is most often a sibling)."""
        key = tuple(parts)
        if key == self._cached[0] and self._cached[1] >= 0:
            return self._cached[1]
        fd = os.dup(self.rootfd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(comp, 0o755, dir_fd=fd)  # an implicit parent, as tar makes it
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = "/".join(parts[:i + 1])
                    st = os.lstat(comp, dir_fd=fd)
                    if stat.S_ISLNK(st.st_mode):
                        raise LayerRefused(entry, f"the path goes through the symlink {where!r} "
                                                  "(an earlier entry); refusing to follow it") from None
                    raise LayerRefused(entry, f"{where!r} is not a directory") from None
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        self._drop_cache()
        self._cached = (key, fd)
        return fd

    def _clear(self, pfd: int, name: str, keep_dir: bool = False) -> bool:
        """Remove what `name` is now; → True if it is a directory that was kept."""
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            # the cached fd is this entry's parent: removing a child leaves it valid
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)
        return False

    def unpack(self, tar_stream) -> None:
        try:
            tf = tarfile.open(fileobj=tar_stream, mode="r|", bufsize=_CHUNK)
        except tarfile.TarError as e:
            raise ImageError(f"layer: not a tar archive: {e}") from None
        try:
            for m in tf:
                self.entries += 1
                self._entry(tf, m)
        except tarfile.TarError as e:
            raise ImageError(f"layer: broken tar archive: {e}") from None
        self._finish_dirs()

    def _entry(self, tf, m: tarfile.TarInfo) -> None:
        entry = m.name
        parts = clean_path(m.name, entry)
        if not parts:
            if m.isdir():  # "./": the layer root's own owner and mode
                self.dirs.append(([], m))
                return
            raise LayerRefused(entry, "the layer root must be a directory")
        name = parts[-1]
        pfd = self._open_dir(parts[:-1], entry, create=True)
        if name.startswith(WHITEOUT):
            self._whiteout(pfd, parts, name, entry)
            return
        for key in m.pax_headers:
            if key.startswith("SCHILY.xattr.") and _forbidden_xattr(key[13:]):
                raise LayerRefused(entry, f"xattr {key[13:]} is not allowed in an image layer")
        if m.isdir():
            if not self._clear(pfd, name, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=pfd)
            self.dirs.append((parts, m))
            return
        self._clear(pfd, name)
        if m.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=pfd)
            try:
                if self.split is not None and m.size and m.sparse is None:
                    self.split.file(m.offset_data, m.size, "/".join(parts))
                src = tf.extractfile(m)
                left = m.size
                while left > 0:
                    chunk = src.read(min(left, _CHUNK))
                    if not chunk:
                        raise ImageError(f"layer entry {entry!r}: truncated data")
                    _write_all(fd, chunk)
                    left -= len(chunk)
                self._meta_fd(fd, m, entry)
            finally:
                os.close(fd)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=pfd)
            self._meta_path(pfd, name, m, entry, link=True)
        elif m.islnk():
            self._hardlink(pfd, name, m, entry)
        elif m.ischr() or m.isblk():
            if self.rootless:
                # no device node without privilege, as Docker's and containers' unpackers do
                self.skipped_devices.append(entry)
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            self._meta_path(pfd, name, m, entry)
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
            self._meta_path(pfd, name, m, entry)
        else:
            raise LayerRefused(entry, f"unsupported tar entry type {m.type!r}")

    def _whiteout(self, pfd: int, parts: list, name: str, entry: str) -> None:
        if name == OPAQUE:
            self._set_xattr(pfd, self.opaque_xattr, b"y", entry)
            return
        if name.startswith(WHITEOUT + WHITEOUT):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): nothing for overlay
        target = name[len(WHITEOUT):]
        if target in ("", ".", ".."):
            raise LayerRefused(entry, "a whiteout must name a file")
        self._clear(pfd, target)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
        if not self.rootless:
            os.chown(target, 0, 0, dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, pfd: int, name: str, m, entry: str) -> None:
        tparts = clean_path(m.linkname, entry, "hard link target")
        if not tparts:
            raise LayerRefused(entry, "a hard link to the layer root")
        try:
            tfd = os.dup(self._open_dir(tparts[:-1], entry, create=False))
        except FileNotFoundError:
            raise LayerRefused(entry, f"hard link target {m.linkname!r} is not in this layer") from None
        try:
            try:
                st = os.lstat(tparts[-1], dir_fd=tfd)
            except FileNotFoundError:
                raise LayerRefused(entry, f"hard link target {m.linkname!r} is not in this layer") from None
            if stat.S_ISDIR(st.st_mode):
                raise LayerRefused(entry, f"hard link to the directory {m.linkname!r}")
            pfd = self._open_dir(_parent_parts(m.name), entry, create=True)
            os.link(tparts[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _xattrs(self, m) -> list:
        out = []
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
                out.append((key[13:], raw))
        return out

    def _set_xattr(self, target, name: str, value: bytes, entry: str, link: bool = False) -> None:
        try:
            os.setxattr(target, name, value, follow_symlinks=not link)
        except OSError as e:
            # without root, trusted.* and security.* cannot be set: skipped, as rootless
            # engines do; as root a failure is an error
            if self.rootless and e.errno in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                return
            raise ImageError(f"layer entry {entry!r}: cannot set xattr {name}: {e.strerror}") from None

    def _meta_fd(self, fd: int, m, entry: str) -> None:
        if not self.rootless:
            os.chown(fd, m.uid, m.gid)
        os.chmod(fd, m.mode & 0o7777)  # after chown, which clears setuid bits
        for k, v in self._xattrs(m):
            self._set_xattr(fd, k, v, entry)
        os.utime(fd, ns=_times(m))

    def _meta_path(self, pfd: int, name: str, m, entry: str, link: bool = False) -> None:
        if not self.rootless:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if not link:
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd)
        for k, v in self._xattrs(m):
            self._set_xattr(f"/proc/self/fd/{pfd}/{name}", k, v, entry, link=True)
        os.utime(name, ns=_times(m), dir_fd=pfd, follow_symlinks=False)

    def _finish_dirs(self) -> None:
        """Directories' owners, modes and times last: their children changed their mtime,
        and a read-only mode would have stopped the children being made."""
        self._drop_cache()
        for parts, m in reversed(self.dirs):
            try:
                fd = os.dup(self._open_dir(parts, m.name, create=False))
            except (FileNotFoundError, LayerRefused):
                continue  # replaced by a later entry
            try:
                self._meta_fd(fd, m, m.name)
            finally:
                os.close(fd)
        self._drop_cache()


def _parent_parts(name: str) -> list:
    return [p for p in name.split("/") if p not in ("", ".")][:-1]


def _times(m) -> tuple:
    mt = int(m.mtime * 1_000_000_000)
    at = m.pax_headers.get("atime")
    try:
        at_ns = int(float(at) * 1_000_000_000) if at else mt
    except ValueError:
        at_ns = mt
    return (at_ns, mt)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def unpack(tar_stream, dest: str, rootless: bool, split=None) -> Unpacker:
    """Unpack a (decompressed) layer tar stream into the empty directory `dest`; with
    `split` (a tarsplit.Recorder that tar_stream reads through), record the stream."""
    u = Unpacker(dest, rootless, split)
    try:
        u.unpack(tar_stream)
    finally:
        u.close()
    return u
