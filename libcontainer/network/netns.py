"""Network namespaces: entering one for a moment (a netlink socket opened inside stays
bound to it; /proc/sys/net shows the namespace of whoever opens it).

Python 3.11 has no os.setns: libc's is called through `_ctypes`, the C half of ctypes
(~0.5 ms to import; the `ctypes` package around it costs 3-8 ms more here, in every ADD
and DEL of the plugin), with the two small classes ctypes would define for it."""
from __future__ import annotations

import os

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
_setns = None


def _libc_setns():
    import _ctypes

    class c_int(_ctypes._SimpleCData):  # ctypes.c_int
        _type_ = "i"

    class CFunction(_ctypes.CFuncPtr):  # ctypes.CDLL(None, use_errno=True)'s functions
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = c_int

    fn = CFunction(_ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "setns"))
    fn.argtypes = (c_int, c_int)
    return fn, _ctypes.get_errno


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    global _setns
    if _setns is None:
        _setns = _libc_setns()
    fn, get_errno = _setns
    if fn(fd, nstype) != 0:
        err = get_errno()
        raise OSError(err, os.strerror(err))


def open_netns(path: str) -> int:
    """An fd of the network namespace at `path`; OSError naming the path otherwise."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # a file that is not a namespace fails later with a puzzling EINVAL: say it here.
        # Asked of the namespace itself (the fd's readlink names the path for a bind mount,
        # as `ip netns` and podman make them)
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = 0
        if kind != CLONE_NEWNET:
            raise OSError(22, f"{path} is not a network namespace")
    except BaseException:
        os.close(fd)
        raise
    return fd


class Inside:
    """`with Inside(fd):` runs the block in that network namespace, then returns to the
    one the thread was in. setns() moves only the calling thread: other threads of the
    process (a caller of the Python API) stay where they are."""

    def __init__(self, fd: int):
        self.fd = fd
        self.home = -1

    def __enter__(self) -> "Inside":
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(self.fd)
        except BaseException:
            os.close(self.home)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            setns(self.home)
        finally:
            os.close(self.home)
