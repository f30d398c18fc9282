"""Whole small files — cgroup and /proc files, the state's JSON — through raw syscalls.

Python's open() costs seven syscalls per file (two fstats, an isatty ioctl, two lseeks
besides open, read and close) and builds a buffered reader; a container's start and delete
read and write some forty small files, so these do it with open, read/write and close."""
from __future__ import annotations

import os

_READ = os.O_RDONLY | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def read(path: str) -> bytes:
    """The whole file (a short read is not the end of a /proc or cgroup file: read to 0)."""
    return _read(path, 1)


def read_once(path: str, dir_fd: int | None = None) -> bytes:
    """A file the kernel hands over whole in one read: a regular file (a short read of
    one is its end), a one-record /proc file (/proc/PID/stat: seq_file fills the read
    from one show), a one-value cgroup file. One read(2), not two (the one that says 0
    costs as much): `list` reads three per container. A read that fills the buffer goes
    on to the end. `dir_fd`: `path` is relative to this directory (os.open's dir_fd)."""
    return _read(path, 65536, dir_fd)


def text(path: str) -> str:
    """A small kernel file's value as text, stripped; "" when it cannot be read (for a
    message that names what it can)."""
    try:
        return read(path).decode(errors="replace").strip()
    except OSError:
        return ""


def _read(path: str, whole_below: int, dir_fd: int | None = None) -> bytes:
    """A first read shorter than `whole_below` bytes is the whole file; else read to 0."""
    fd = os.open(path, _READ, dir_fd=dir_fd)
    try:
        data = os.read(fd, 65536)
        if len(data) < whole_below:
            return data
        chunks = [data]
        while True:
            more = os.read(fd, 65536)
            if not more:
                return b"".join(chunks)
            chunks.append(more)
    finally:
        os.close(fd)


def write(path: str, data: bytes) -> None:
    """One write(2) to an existing file: a cgroup or /proc file takes each write as one
    value, so it is never split (the kernel takes such a value whole or refuses it)."""
    fd = os.open(path, _WRITE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def create(path: str, data: bytes, mode: int = 0o666) -> None:
    """A new (or emptied) regular file holding `data`; the mode, as open() gives it, is
    0o666 less the umask."""
    fd = os.open(path, _CREATE, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
