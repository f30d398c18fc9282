"""Streams of a container: logs (json-file, follow), attach (through the monitor's socket),
exec relays (pipes or a pty)."""
from __future__ import annotations

import asyncio
import os

from .. import logs as logfiles
from .base import frame


async def open_attach(cdir: str):
    """Connect to a monitor's attach socket through a directory fd: the socket's own path
    may be longer than a unix socket address allows."""
    fd = os.open(cdir, os.O_PATH | os.O_DIRECTORY)
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}/attach.sock")
    finally:
        os.close(fd)


async def read_fd(fd: int, n: int = 65536) -> bytes:
    """One read of a non-blocking fd, awaiting readiness; b"" at EOF (EIO of a pty too)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, n)
        except BlockingIOError:
            pass
        except OSError:
            return b""
        fut = loop.create_future()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            loop.remove_reader(fd)


def _format(rec, tty: bool, timestamps: bool) -> bytes:
    stream, text, t = rec
    data = text.encode("utf-8", "surrogateescape")
    if timestamps:
        data = t.encode() + b" " + data
    return data if tty else frame(2 if stream == "stderr" else 1, data)


async def send_logs(write, cdir: str, tty: bool, stdout: bool, stderr: bool, since: float,
                    until: float, tail: int, timestamps: bool, follow: bool, is_running) -> None:
    loop = asyncio.get_running_loop()
    recs, offset = await loop.run_in_executor(None, logfiles.read, cdir, stdout, stderr, since,
                                              until, tail)
    for r in recs:
        if not await write(_format(r, tty, timestamps)):
            return
    if not follow:
        return
    path = os.path.join(cdir, "json.log")
    try:
        ino = os.stat(path).st_ino
    except OSError:
        ino = 0
    buf = b""
    while True:
        running = is_running()
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and st.st_ino != ino:  # rotated: the new file from its start
            ino, offset, buf = st.st_ino, 0, b""
        if st is not None and st.st_size > offset:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(st.st_size - offset)
            offset += len(data)
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                r = logfiles.parse_line(line)
                if r and logfiles.keep(r, stdout, stderr, since, until):
                    if not await write(_format(r, tty, timestamps)):
                        return
            continue
        if not running:
            return
        await asyncio.sleep(0.05)


def parse_detach_keys(text: str) -> bytes:
    """docker's detach keys: "ctrl-p,ctrl-q", "a,ctrl-a" → the byte sequence."""
    out = bytearray()
    for k in (text or "ctrl-p,ctrl-q").split(","):
        k = k.strip()
        if k.startswith("ctrl-") and len(k) == 6:
            c = k[5]
            out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(c, (ord(c.lower()) - 96) & 0x1f))
        elif len(k) == 1:
            out.append(ord(k))
        else:
            raise ValueError(f"Invalid detach keys ({text}) provided")
    return bytes(out)


async def relay_attach(h, sock_path: str, tty: bool, want_in: bool, want_out: bool,
                       want_err: bool, stdin_once: bool, detach_keys: bytes,
                       on_connected=None) -> None:
    """Client ⇄ the container's monitor until the container exits, the client goes, or the
    client types the detach keys."""
    try:
        reader, writer = await open_attach(sock_path)
    except OSError:
        if on_connected:
            on_connected()
        return
    if on_connected:
        on_connected()

    async def out():
        while True:
            try:
                hdr = await reader.readexactly(8)
                data = await reader.readexactly(int.from_bytes(hdr[4:], "big"))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            stream = hdr[0]
            if stream == 1 and not want_out or stream == 2 and not want_err:
                continue
            if not await h.write(data if tty else frame(stream, data)):
                return

    async def inp():
        matched = 0
        while True:
            data = await h.read()
            if not data:
                if want_in and (stdin_once or not tty):
                    try:
                        writer.write(bytes([1, 0, 0, 0, 0, 0, 0, 0]))
                        await writer.drain()
                    except ConnectionError:
                        pass
                return "eof"
            if not want_in:
                continue
            if tty and detach_keys:
                data, matched, hit = escape(data, detach_keys, matched)
                if hit:
                    return "detach"
                if not data:
                    continue
            try:
                writer.write(bytes([0, 0, 0, 0]) + len(data).to_bytes(4, "big") + data)
                await writer.drain()
            except ConnectionError:
                return "gone"

    t_out = asyncio.ensure_future(out())
    t_in = asyncio.ensure_future(inp())
    try:
        pending = {t_out, t_in}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if t_out in done:
                break
            if t_in in done and t_in.result() in ("detach", "gone"):
                break
            if t_in in done and not h.upgraded:
                continue
    finally:
        for t in (t_out, t_in):
            t.cancel()
        writer.close()


async def send_frame(sock_path: str, kind: int, payload: bytes = b"") -> None:
    try:
        _, writer = await open_attach(sock_path)
    except OSError:
        return
    try:
        writer.write(bytes([kind, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload)
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def relay_exec(h, fds: tuple, tty: bool, raw: bool, ex, on_detach=None) -> str:
    """An exec's pipes (or pty) ⇄ the hijacked client until the process is done (→ "") or,
    on a tty with stdin, the client types the detach keys (→ "detach", after awaiting
    on_detach(), before the fds close). `raw`: the stream is not multiplexed (the start
    asked Tty)."""
    inp, out, err = fds
    loop = asyncio.get_running_loop()
    for fd in (out, err):
        if fd >= 0:
            os.set_blocking(fd, False)
    keys = parse_detach_keys(ex.cfg.get("DetachKeys") or "") if tty and inp >= 0 else b""

    async def pump(fd, stream):
        while True:
            data = await read_fd(fd)
            if not data:
                return
            await h.write(data if raw else frame(stream, data))

    async def feed():
        matched = 0
        while True:
            data = await h.read()
            if not data:
                if inp >= 0:
                    if tty:
                        try:
                            await loop.run_in_executor(None, os.write, inp, b"\x04")
                        except OSError:
                            pass
                    else:
                        os.close(inp)
                return ""
            if inp < 0:
                continue
            if keys:
                data, matched, hit = escape(data, keys, matched)
                if hit:
                    return "detach"
                if not data:
                    continue
            try:
                await loop.run_in_executor(None, os.write, inp, data)
            except OSError:
                return ""

    tasks = [asyncio.ensure_future(pump(out, 1))]
    if err >= 0:
        tasks.append(asyncio.ensure_future(pump(err, 2)))
    feeder = asyncio.ensure_future(feed())
    waiter = exited(ex)
    main = asyncio.ensure_future(asyncio.wait(tasks + [waiter], return_when=asyncio.ALL_COMPLETED
                                              if not tty else asyncio.FIRST_COMPLETED))
    try:
        await asyncio.wait([main, feeder], return_when=asyncio.FIRST_COMPLETED)
        if feeder.done() and feeder.result() == "detach":
            if on_detach:
                await on_detach()
            return "detach"
        await main
        if tty:
            # the exit comes first: what the pty still holds is read, then the stream ends
            await asyncio.wait(tasks, timeout=0.5)
        await waiter
        return ""
    finally:
        feeder.cancel()
        main.cancel()
        for t in tasks:
            t.cancel()
        closed = set()
        for fd in (out, err) + (() if tty else (inp,)):
            if fd >= 0 and fd not in closed:
                closed.add(fd)
                try:
                    os.close(fd)
                except OSError:
                    pass
        if tty:
            ex.master = -1


def exited(ex) -> asyncio.Future:
    """A future done when the exec's process is reaped (no thread kept waiting on it: a
    detached exec may run for as long as its container)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def done():
        if not fut.done():
            fut.set_result(None)
    ex.on_done.append(lambda: loop.call_soon_threadsafe(done))
    if ex.done.is_set():
        done()
    return fut


def escape(data: bytes, keys: bytes, matched: int) -> tuple:
    """The client's bytes less a detach sequence: (bytes to pass on, how much of the
    sequence is matched so far, whether it is complete). A partial match that breaks off is
    passed on, as docker's escape proxy does."""
    keep = bytearray()
    for b in data:
        if b == keys[matched]:
            matched += 1
            if matched == len(keys):
                return bytes(keep), 0, True
        else:
            keep += keys[:matched]
            matched = 0
            if b == keys[0]:
                matched = 1
            else:
                keep.append(b)
    return bytes(keep), matched, False
