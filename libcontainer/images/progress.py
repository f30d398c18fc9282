"""Per-layer progress of a pull: one line per layer, rewritten in place on a terminal (bytes
and rate); nothing when stderr is not a terminal or when asked to be quiet."""
from __future__ import annotations

import sys
import time


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


class Quiet:
    def layer(self, digest: str, total: int) -> "Quiet":
        return self

    def update(self, n: int) -> None:
        pass

    def done(self, note: str = "") -> None:
        pass

    def message(self, text: str) -> None:
        pass


class Terminal(Quiet):
    def __init__(self, stream=None):
        self.out = stream or sys.stderr

    def layer(self, digest: str, total: int) -> "_Line":
        return _Line(self.out, digest, total)

    def message(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


class _Line(Quiet):
    def __init__(self, out, digest: str, total: int):
        self.out, self.total = out, total
        self.label = f"layer {digest[7:19]}"
        self.start = self.last = time.monotonic()
        self.seen = 0
        self._draw()

    def update(self, n: int) -> None:
        self.seen += n
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self._draw()

    def _draw(self, end: str = "", note: str = "") -> None:
        rate = self.seen / max(time.monotonic() - self.start, 1e-6)
        text = note or f"{_size(self.seen)} / {_size(self.total)}  {_size(rate)}/s"
        self.out.write(f"\r\x1b[K{self.label}  {text}{end}")
        self.out.flush()

    def done(self, note: str = "") -> None:
        self._draw("\n", note or f"{_size(self.total)} done")


def choose(quiet: bool, stream=None):
    stream = stream or sys.stderr
    if quiet or not stream.isatty():
        return Quiet()
    return Terminal(stream)
