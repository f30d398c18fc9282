"""Per-layer progress of a pull: one line per layer, rewritten in place on a terminal (bytes
and rate); nothing when stderr is not a terminal or when asked to be quiet."""
from __future__ import annotations

import sys
import threading
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
    """A block of lines, one per layer, redrawn in place (layers are fetched in parallel)."""

    def __init__(self, stream=None):
        self.out = stream or sys.stderr
        self.lock = threading.Lock()
        self.lines: list = []
        self.drawn = 0
        self.last = 0.0

    def layer(self, digest: str, total: int) -> "_Line":
        line = _Line(self, digest, total)
        self.lines.append(line)
        self.redraw(force=True)
        return line

    def redraw(self, force: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if not force and now - self.last < 0.1:
                return
            self.last = now
            text = f"\x1b[{self.drawn}A" if self.drawn else ""
            text += "".join(f"\r\x1b[K{line.text()}\n" for line in self.lines)
            self.drawn = len(self.lines)
            self.out.write(text)
            self.out.flush()

    def message(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()
            self.lines, self.drawn = [], 0


class _Line(Quiet):
    def __init__(self, owner: Terminal, digest: str, total: int):
        self.owner, self.total = owner, total
        self.label = f"layer {digest[7:19]}"
        self.start = time.monotonic()
        self.seen = 0
        self.note = ""

    def update(self, n: int) -> None:
        self.seen += n
        self.owner.redraw()

    def text(self) -> str:
        if self.note:
            return f"{self.label}  {self.note}"
        rate = self.seen / max(time.monotonic() - self.start, 1e-6)
        return f"{self.label}  {_size(self.seen)} / {_size(self.total)}  {_size(rate)}/s"

    def done(self, note: str = "") -> None:
        self.note = note or f"{_size(self.total)} done"
        self.owner.redraw(force=True)


def choose(quiet: bool, stream=None):
    stream = stream or sys.stderr
    if quiet or not stream.isatty():
        return Quiet()
    return Terminal(stream)
