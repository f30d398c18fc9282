"""Graph drivers: a container's root filesystem from an image's layers. `overlay` mounts the
layers (lower, top first) under a per-bundle upper and work dir; `vfs` copies them, in order,
into the rootfs, applying the whiteouts, where overlay cannot be used."""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat

from .errors import ImageError

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_MNT_DETACH = 2


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def mount_overlay(lowers: list, upper: str, work: str, target: str, rootless: bool) -> None:
    for p in lowers + [upper, work]:
        if any(c in p for c in ",:"):
            raise ImageError(f"overlay: the path {p!r} has a ',' or ':' (use --driver vfs)")
    opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if rootless:
        opts += ",userxattr"
    if len(opts) >= 4000:
        raise ImageError(f"overlay: {len(lowers)} layers are too many for one mount's options "
                         "(use --driver vfs)")
    if _libc().mount(b"overlay", target.encode(), b"overlay", 0, opts.encode()) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount overlay: {os.strerror(e)}", target)


def unmount(target: str) -> None:
    if _libc().umount2(target.encode(), 0) != 0:
        e = ctypes.get_errno()
        if e == errno.EINVAL:  # not a mount point (any more)
            return
        if e == errno.EBUSY:
            raise ImageError(f"{target} is busy: a container still uses it (delete it first)")
        raise OSError(e, f"umount: {os.strerror(e)}", target)


def overlay_supported() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def choose(requested: str, rootless: bool) -> str:
    if requested not in ("", "auto", "overlay", "vfs"):
        raise ImageError(f"--driver: unknown driver {requested!r} (want overlay or vfs)")
    if requested in ("overlay", "vfs"):
        return requested
    # a rootless `runner bundle` runs in the host's mount namespace: no overlay mount there
    return "overlay" if overlay_supported() and not rootless else "vfs"


def copy_attrs(src_st, dst: str, rootless: bool, xattrs_from: str = "") -> None:
    """Owner, mode, xattrs, times — in this order: chown clears setuid bits and
    security.capability, and every change but utime moves the ctime/mtime."""
    if not rootless:
        os.chown(dst, src_st.st_uid, src_st.st_gid, follow_symlinks=False)
    os.chmod(dst, stat.S_IMODE(src_st.st_mode))
    if xattrs_from:
        _copy_xattrs(xattrs_from, dst, rootless)
    os.utime(dst, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))


def copy_root_attrs(top_layer: str, dst: str, rootless: bool) -> None:
    """The merged root's owner and mode are those of the top layer's root (overlay: of the
    upper dir, which is made here)."""
    copy_attrs(os.lstat(top_layer), dst, rootless)


def _is_whiteout(st) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _copy_xattrs(src: str, dst: str, rootless: bool) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for n in names:
        if n in OPAQUE_XATTRS or n.startswith(("trusted.overlay.", "user.overlay.")):
            continue
        try:
            os.setxattr(dst, n, os.getxattr(src, n, follow_symlinks=False), follow_symlinks=False)
        except OSError:
            if not rootless:
                raise


def apply_layer(src: str, dst: str, rootless: bool) -> None:
    """vfs: lay one unpacked layer (overlay form) over the tree `dst`. The destination's
    parents are always real directories made or checked here, so nothing is followed."""
    links: dict = {}
    _apply_dir(src, dst, rootless, links)


def _apply_dir(src: str, dst: str, rootless: bool, links: dict) -> None:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        s, d = e.path, os.path.join(dst, e.name)
        st = e.stat(follow_symlinks=False)
        if _is_whiteout(st):
            _remove(d)
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                dst_st = os.lstat(d)
            except FileNotFoundError:
                dst_st = None
            if dst_st is not None and not stat.S_ISDIR(dst_st.st_mode):
                os.unlink(d)
                dst_st = None
            if dst_st is None:
                os.mkdir(d, 0o700)
            elif _is_opaque(s):
                for n in os.listdir(d):
                    _remove(os.path.join(d, n))
            _apply_dir(s, d, rootless, links)
            copy_attrs(st, d, rootless, xattrs_from=s)
            continue
        _remove(d)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            os.link(links[key], d, follow_symlinks=False)
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
            if not rootless:
                os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
            _copy_xattrs(s, d, rootless)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        else:
            if stat.S_ISREG(st.st_mode):
                shutil.copyfile(s, d, follow_symlinks=False)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                os.mknod(d, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
            else:
                continue  # sockets: nothing an image carries
            copy_attrs(st, d, rootless, xattrs_from=s)
        if st.st_nlink > 1:
            links[key] = d
