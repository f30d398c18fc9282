"""Tar-split: what a layer's tar stream holds besides the contents of its regular files
(headers, pax records, padding, the end-of-archive blocks), recorded as the layer is
unpacked, so that the exact stream — the bytes whose sha256 is the layer's diff id — can be
made again from the unpacked directory for a push or a save. Docker and containers/storage
keep the same kind of record; without it a layer could be re-tarred only into a different
diff id, and the image id (the config's digest) would change on every push.

The record (`layers/HEX/tar-split.gz`, gzip) is a sequence of
    b"R" + u64 length + bytes              raw bytes of the stream, as they were
    b"F" + u16 length + path + u64 size    `size` bytes of the layer's file `path`
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct

from .errors import ImageError

NAME = "tar-split.gz"
_CHUNK = 1 << 20


class Recorder:
    """Reads a tar stream through for tarfile and records it; `file()` is told, before
    tarfile reads a member's content, where that content lies, and those bytes are left out."""

    def __init__(self, f, path: str):
        self.f = f
        self.out = gzip.open(path, "wb", compresslevel=1)
        self.pos = 0           # bytes read from f so far
        self.buf = bytearray()  # bytes from buf_start not yet written out
        self.buf_start = 0
        self.skip_until = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        start = self.pos
        self.pos += len(data)
        if self.skip_until > start:
            data_kept = data[min(len(data), self.skip_until - start):]
        else:
            data_kept = data
        self.buf += data_kept
        return data

    def file(self, offset: int, size: int, path: str) -> None:
        if offset < self.buf_start:
            raise ImageError(f"tar-split: entry {path!r} at {offset} before {self.buf_start}")
        self._raw(bytes(self.buf[:offset - self.buf_start]))
        name = path.encode("utf-8", "surrogateescape")
        self.out.write(b"F" + struct.pack(">H", len(name)) + name + struct.pack(">Q", size))
        end = offset + size
        if end <= self.pos:
            del self.buf[:end - self.buf_start]
        else:
            self.buf.clear()
            self.skip_until = end
        self.buf_start = end

    def _raw(self, data: bytes) -> None:
        if data:
            self.out.write(b"R" + struct.pack(">Q", len(data)) + data)

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def close(self) -> None:
        """Write what is left (the stream's end) and close the record."""
        self._raw(bytes(self.buf))
        self.buf.clear()
        self.out.close()

    def abort(self) -> None:
        self.out.close()


class Reassembled:
    """The layer's tar stream again, from its record and its directory; read() as a file.
    The caller compares `digest()` with the diff id once it has read to the end."""

    def __init__(self, layer_dir: str, what: str):
        self.what = what
        self.diff = os.path.join(layer_dir, "diff")
        try:
            self.rec = gzip.open(os.path.join(layer_dir, NAME), "rb")
        except FileNotFoundError:
            raise ImageError(f"{what}: the store has no tar-split record of it (stored by an "
                             "older runner): remove the image and pull it again") from None
        self.hash = hashlib.sha256()
        self.size = 0
        self.gen = self._chunks()
        self.pending = b""

    def _exact(self, n: int) -> bytes:
        data = self.rec.read(n)
        if len(data) != n:
            raise ImageError(f"{self.what}: its tar-split record is truncated")
        return data

    def _chunks(self):
        while True:
            kind = self.rec.read(1)
            if not kind:
                return
            if kind == b"R":
                (n,) = struct.unpack(">Q", self._exact(8))
                while n:
                    part = self._exact(min(n, _CHUNK))
                    n -= len(part)
                    yield part
            elif kind == b"F":
                (ln,) = struct.unpack(">H", self._exact(2))
                rel = self._exact(ln).decode("utf-8", "surrogateescape")
                (size,) = struct.unpack(">Q", self._exact(8))
                yield from self._file(rel, size)
            else:
                raise ImageError(f"{self.what}: its tar-split record is corrupt")

    def _file(self, rel: str, size: int):
        try:
            fd = os.open(os.path.join(self.diff, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise ImageError(f"{self.what}: file {rel!r} of the layer: {e.strerror}") from None
        try:
            left = size
            while left:
                part = os.read(fd, min(left, _CHUNK))
                if not part:
                    raise ImageError(f"{self.what}: file {rel!r} is shorter than when it was "
                                     "unpacked (the stored layer was changed)")
                left -= len(part)
                yield part
        finally:
            os.close(fd)

    def read(self, n: int = -1) -> bytes:
        out = []
        have = len(self.pending)
        if self.pending:
            out.append(self.pending)
        while n < 0 or have < n:
            chunk = next(self.gen, None)
            if chunk is None:
                break
            out.append(chunk)
            have += len(chunk)
        data = b"".join(out)
        if n >= 0 and len(data) > n:
            data, self.pending = data[:n], data[n:]
        else:
            self.pending = b""
        self.hash.update(data)
        self.size += len(data)
        return data

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def close(self) -> None:
        self.rec.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
