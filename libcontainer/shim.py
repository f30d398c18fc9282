"""Thin wrapper over the compiled cffi module: Plan → C structs → rc_spawn."""
from __future__ import annotations

import errno
import os
from time import monotonic

from ._shim import ffi, lib

MSG_USERNS, MSG_WAITGO, MSG_ERROR, MSG_FD, MSG_CREATED, MSG_CHILD, MSG_SYNC = 1, 2, 3, 4, 5, 6, 7
MSG_SIZE = ffi.sizeof("struct rc_msg")


# C copies of the strings plans use, by value: a warm process starting the same config
# again passes the same paths and options (the C side only reads them: const char *).
# Each with its address, which the ops are packed with.
_cstrs: dict = {}


def _cbuf(s) -> tuple:
    """(the C copy of `s`, its address)"""
    got = _cstrs.get(s)
    if got is None:
        buf = ffi.new("char[]", s.encode() if isinstance(s, str) else s)
        got = (buf, int(ffi.cast("uintptr_t", buf)))
        if len(_cstrs) >= 4096:
            _cstrs.clear()  # (a running spawn holds its own in `keep`)
        _cstrs[s] = got
    return got


def _cstr(keep: list, s):
    if s is None:
        return ffi.NULL
    buf = _cbuf(s)[0]
    keep.append(buf)
    return buf


def _addr(keep: list, s) -> int:
    if s is None:
        return 0
    buf, addr = _cbuf(s)
    keep.append(buf)
    return addr


def _op_layout():
    """struct rc_op as a `struct` format, checked field by field against the compiled
    layout: the ops (some sixty a container) are packed into one buffer, rather than set a
    field at a time through cffi (~0.3 ms a start). None where it does not match."""
    import _struct as struct  # (the C module: `struct` adds a Python one to `runner run`)

    fields = (("kind", "i"), ("path", "P"), ("src", "P"), ("fstype", "P"), ("data", "P"),
              ("flags", "L"), ("pflags", "L"), ("a", "Q"), ("b", "Q"), ("c", "Q"), ("d", "Q"),
              ("e", "Q"), ("len", "i"))
    fmt = "@"
    for name, code in fields:
        fmt += code
        if struct.calcsize(fmt) - struct.calcsize("@" + code) != ffi.offsetof("struct rc_op", name):
            return None
    size = ffi.sizeof("struct rc_op")
    fmt += "x" * (size - struct.calcsize(fmt))
    if struct.calcsize(fmt) != size:
        return None
    return struct.Struct(fmt)


_OP = _op_layout()


# Each op packed once: id(op) → (op, its packed bytes, the C strings they point to). A
# warm process planning the same config again gets the same op tuples (plancache.py), so
# only the ops naming the container's own cgroup are packed anew. The entry keeps the op,
# so its id is not reused while the entry lives.
_packed: dict = {}
# The ~11 cgroup ops of each container are new ones, so the dict fills at that pace and is
# cleared when full: 512 entries (~0.4 MiB) hold a few configs' other ops between clears;
# 4096 (~3.4 MiB) grew a warm process's RSS past `make soak`'s 2 MiB slack, for nothing.
_PACKED_MAX = 512


def _pack(o: tuple) -> tuple:
    kind, path, src, fstype, data, flags, pflags, a, b, c, d, e = o
    bufs: list = []
    n = 0
    if isinstance(data, bytes):
        buf = ffi.new("char[]", data)
        bufs.append(buf)
        daddr, n = int(ffi.cast("uintptr_t", buf)), len(data)
    else:
        daddr = _addr(bufs, data)
    raw = _OP.pack(kind, _addr(bufs, path), _addr(bufs, src), _addr(bufs, fstype), daddr,
                   flags, pflags, a, b, c, d, e, n)
    return (o, raw, bufs)


def _ops(keep: list, plan_ops: list):
    ops = ffi.new("struct rc_op[]", len(plan_ops))
    if _OP is None:
        for i, o in enumerate(plan_ops):
            _set_op(keep, ops[i], *o)
        return ops
    parts = []
    for o in plan_ops:
        got = _packed.get(id(o))
        if got is None or got[0] is not o:
            got = _pack(o)
            if len(_packed) >= _PACKED_MAX:
                _packed.clear()  # (a running spawn holds its ops' strings in `keep`)
            _packed[id(o)] = got
        parts.append(got[1])
        keep.append(got[2])
    raw = b"".join(parts)
    ffi.memmove(ops, raw, len(raw))
    return ops


def _set_op(keep: list, o, kind, path, src, fstype, data, flags, pflags, a, b, c, d, e):
    o.kind = kind
    o.path = _cstr(keep, path)
    o.src = _cstr(keep, src)
    o.fstype = _cstr(keep, fstype)
    if isinstance(data, bytes):
        buf = ffi.new("char[]", data)
        keep.append(buf)
        o.data = buf
        o.len = len(data)
    else:
        o.data = _cstr(keep, data)
    o.flags, o.pflags, o.a, o.b, o.c, o.d, o.e = flags, pflags, a, b, c, d, e


def _strv(keep: list, items):
    arr = ffi.new("char *[]", len(items) + 1)
    for i, s in enumerate(items):
        arr[i] = _cstr(keep, s)
    keep.append(arr)
    return arr


class Spawned:
    """The parent's handle on a child just cloned: its pid and the sync socket."""

    def __init__(self, pid: int, sock: int):
        self.pid = pid
        self.sock = sock


def spawn(plan, stdio=None, cgroup_fd: int = -1, share_memory: bool = False) -> Spawned:
    """Clone the child that will run `plan`. It waits for the parent before doing anything."""
    keep: list = []
    p = ffi.new("struct rc_plan *")
    p.clone_flags = plan.clone_flags
    p.new_timens = 1 if plan.new_timens else 0
    p.time_offsets = _cstr(keep, plan.time_offsets or None)
    joins = ffi.new("struct rc_ns_join[]", max(len(plan.joins), 1))
    for i, (flag, path) in enumerate(plan.joins):
        joins[i].nstype = flag
        joins[i].path = _cstr(keep, path)
    p.joins = joins
    p.njoins = len(plan.joins)
    p.cgroup_fd = cgroup_fd
    p.netns_fd = plan.netns_fd
    p.cgroup_files = _strv(keep, plan.cgroup_files)
    p.ncgroup_files = len(plan.cgroup_files)
    ops = _ops(keep, plan.ops)
    p.ops = ops
    p.nops = len(plan.ops)
    p.argv = _strv(keep, plan.argv)
    p.envp = _strv(keep, plan.env)
    p.path_env = _cstr(keep, plan.path_env)
    gids = ffi.new("unsigned int[]", max(len(plan.gids), 1))
    for i, g in enumerate(plan.gids):
        gids[i] = g
    p.gids = gids
    p.ngids = len(plan.gids)
    p.keep_fds = plan.keep_fds
    p.share_memory = 1 if share_memory else 0
    if stdio is not None:
        fds = ffi.new("int[3]", list(stdio))
        keep.append(fds)
        p.stdio = fds
    else:
        p.stdio = ffi.NULL
    sock = ffi.new("int *")
    pid = lib.rc_spawn(p, sock)
    if pid < 0:
        raise spawn_error(-pid, cgroup_fd)
    return Spawned(pid, sock[0])


def recv(sock: int, timeout: float) -> tuple:
    """(one message from the child, the fd it carried or -1), waiting up to `timeout` s for
    it (b"": the child's end closed, at its execve). TimeoutError past it, else OSError as
    recvmsg's, as socket.recvmsg on a socket with that timeout did (rc_recv)."""
    buf = ffi.new("char[]", MSG_SIZE)
    fd = ffi.new("int *")
    deadline = monotonic() + timeout
    while True:
        ms = int(-((monotonic() - deadline) * 1000 // 1))  # whole ms, rounded up, as socket's
        n = lib.rc_recv(sock, buf, MSG_SIZE, max(ms, 0), fd)
        if n >= 0:
            return ffi.buffer(buf, n)[:], fd[0]
        if n != -errno.EINTR:  # (its handler runs before the next call, and may raise)
            break
    if n == -errno.ETIMEDOUT:
        raise TimeoutError("timed out")
    raise OSError(-n, os.strerror(-n))


def spawn_error(err: int, cgroup_fd: int = -1, borrowed: int = 0) -> Exception:
    """What a failed rc_spawn (-err) raises (`borrowed`: see forklimits.clone_failed)."""
    if err == 11:  # EAGAIN: a process limit; the error names the ones that apply
        from .forklimits import clone_failed

        try:
            into = os.readlink(f"/proc/self/fd/{cgroup_fd}") if cgroup_fd >= 0 else ""
        except OSError:
            into = ""
        return clone_failed(err, into, borrowed)
    return OSError(err, os.strerror(err), "clone")


def idmapped_mount(pid: int, plan, op: int, target: int) -> None:
    """The child of `pid` reached MOUNT op `op`, an id-mapped bind, and sent its target:
    mount it (see rc_idmapped_mount)."""
    src, uid_map, gid_map, rec, ridmap, label = plan.idmaps[plan.ops[op][11] - 1]
    err = lib.rc_idmapped_mount(pid, src.encode(), uid_map.encode(), gid_map.encode(),
                                int(rec), int(ridmap), target)
    if err < 0:
        from .errors import StartError

        raise StartError(f"{label}: {os.strerror(-err)}", -err, label)


def decode(data: bytes):
    """(type, op, errno, pid) of one message."""
    return tuple(int.from_bytes(data[i:i + 4], "little", signed=True) for i in range(0, 16, 4))


def seccomp_version() -> str:
    from ._seccomp import ffi as sffi, lib as slib

    v = slib.seccomp_version()
    return f"{v.major}.{v.minor}.{v.micro}" if v != sffi.NULL else "unknown"
