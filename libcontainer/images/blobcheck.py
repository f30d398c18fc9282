"""Checks on a blob as a pull reads it: its size cut off at the descriptor's, its digest
compared once it is read whole."""
from __future__ import annotations

from .errors import DigestMismatch, ImageError
from .layer import HashingReader


class _Limited(HashingReader):
    """A blob as it arrives: hashed, counted, and cut off past its declared size."""

    def __init__(self, f, limit: int, what: str, progress, stop=None):
        super().__init__(f)
        self.limit, self.what, self.progress, self.stop = limit, what, progress, stop

    def read(self, n: int = -1) -> bytes:
        if self.stop is not None and self.stop.is_set():
            raise _Stopped(self.what)
        data = super().read(n)
        self.progress.update(len(data))
        if self.size > self.limit:
            raise DigestMismatch(f"{self.what}: longer than the {self.limit} bytes its descriptor says")
        return data


class _Stopped(ImageError):
    """Another layer of the same pull failed: this one stops (and cleans up)."""


def _check_blob(raw: "_Limited", desc, cause: Exception | None = None) -> None:
    if cause is not None:
        try:
            raw.drain()
        except (ImageError, OSError):
            return
    if raw.size != desc.size:
        raise DigestMismatch(f"layer {desc.digest}: truncated: {raw.size} of {desc.size} "
                             "bytes") from cause
    if raw.digest() != desc.digest:
        raise DigestMismatch(f"layer {desc.digest}: digest mismatch: got {raw.digest()}") from cause


def _compression(media_type: str) -> str:
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    return "zstd" if media_type.endswith("+zstd") else "none"

