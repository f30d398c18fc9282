"""What every route module shares: the daemon object, JSON in and out, Docker's error JSON,
blocking work off the loop, hijacked (upgraded) connections."""
from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ..errors import BadRequest

API_VERSION = "1.41"
MIN_API_VERSION = "1.12"


def jresp(obj, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(obj).encode(),
                        content_type="application/json")


async def body_json(request: web.Request, default=None):
    """The request's JSON body; 400 naming the problem when it is not JSON."""
    if not request.can_read_body:
        return default
    raw = await request.read()
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except ValueError as e:
        raise BadRequest(f"invalid JSON in the request body: {e}") from None


def go_fields(body: dict, names: tuple) -> dict:
    """The body with its keys spelled as `names` where they match but for case, as dockerd's
    Go JSON decoding takes them (docker-py sends exec's "detachKeys")."""
    canon = {n.lower(): n for n in names}
    out = {}
    for k, v in body.items():
        n = k if k in names else canon.get(k.lower(), k)
        if n not in out or k == n:
            out[n] = v
    return out


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None:
        return default
    return v.lower() not in ("0", "false", "no", "")


def qint(request: web.Request, name: str, default: int = 0) -> int:
    v = request.query.get(name)
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        raise BadRequest(f"invalid value for {name}: {v!r} is not an integer") from None


def qtime(request: web.Request, name: str) -> float:
    """since/until: Unix seconds (fractions allowed) or RFC 3339; 0 when not given."""
    v = request.query.get(name)
    if not v:
        return 0.0
    try:
        return float(v)
    except ValueError:
        from ..records import parse_time

        return parse_time(v)


def qfilters(request: web.Request) -> dict:
    """?filters={"key":["v"]} or the old {"key":{"v":true}} form → {key: [values]}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        f = json.loads(raw)
    except ValueError:
        raise BadRequest(f"invalid filter: {raw!r} is not JSON") from None
    if not isinstance(f, dict):
        raise BadRequest("invalid filter: want an object")
    out = {}
    for k, v in f.items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        else:
            out[k] = [str(v)]
    return out


def labels_match(labels: dict | None, wanted: list) -> bool:
    """docker's `label` filter: every `key` is there, every `key=value` has that value."""
    labels = labels or {}
    return all(k in labels and (not eq or labels[k] == v)
               for k, eq, v in (w.partition("=") for w in wanted))


def filtered(items, filters: dict, tests: dict) -> list:
    """The items that every filter holds for; `tests`: filter name → fn(item, values). A
    filter with no test is refused before any item is looked at, as dockerd does."""
    for k in filters:
        if k not in tests:
            raise BadRequest(f"invalid filter '{k}'")
    return [i for i in items if all(tests[k](i, vals) for k, vals in filters.items())]


def daemon(request: web.Request):
    return request.app["daemon"]


async def blocking(request_or_app, fn, *args, **kw):
    """Run fn in the daemon's thread pool (not the loop's small default one)."""
    app = request_or_app.app if isinstance(request_or_app, web.Request) else request_or_app
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(app["pool"], lambda: fn(*args, **kw))


class RawReader:
    """The parser aiohttp hands an upgraded connection's bytes to: they become a queue
    the handler reads (the client's stdin of attach/exec)."""

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.lost = asyncio.get_running_loop().create_future()  # the client is gone

    def feed_data(self, data: bytes):
        self.queue.put_nowait(data)
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(b"")

    def set_exception(self, exc, cause=None) -> None:
        self.queue.put_nowait(b"")


class _HalfClose:
    """The hijacked connection's protocol: aiohttp's, except that the client's EOF
    (half-close) leaves the connection open for the output."""

    def __init__(self, inner, reader):
        self.inner, self.reader = inner, reader

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool:
        self.reader.feed_eof()
        return True

    def connection_lost(self, exc) -> None:
        self.reader.feed_eof()
        if not self.reader.lost.done():
            self.reader.lost.set_result(None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_made(self, transport) -> None:
        pass


class Hijacked:
    """An attach/exec connection after the 101 (Upgrade: tcp) — or, for a client that did
    not ask to upgrade, a plain streamed 200 without stdin."""

    def __init__(self, request: web.Request, multiplexed: bool):
        self.request = request
        self.upgraded = request.headers.get("Upgrade", "").lower() == "tcp"
        ctype = ("application/vnd.docker.multiplexed-stream" if multiplexed and
                 request.get("api_version", API_VERSION) >= "1.42"
                 else "application/vnd.docker.raw-stream")
        if self.upgraded:
            self.resp = web.StreamResponse(status=101, headers={
                "Content-Type": ctype, "Connection": "Upgrade", "Upgrade": "tcp"})
        else:
            self.resp = web.StreamResponse(status=200, headers={"Content-Type": ctype})
        self.reader = RawReader()
        self.closed = False

    async def start(self) -> None:
        await self.resp.prepare(self.request)
        if self.upgraded:
            self.request.protocol.set_parser(self.reader)
            self.request.protocol.keep_alive(False)
            # a client that sends no stdin half-closes (docker's CloseWrite): the output
            # must still flow, so EOF from the client keeps the transport open
            t = self.request.transport
            if t is not None:
                t.set_protocol(_HalfClose(self.request.protocol, self.reader))
        else:
            self.reader.feed_eof()

    async def write(self, data: bytes) -> bool:
        if self.closed or not data:
            return not self.closed
        try:
            if self.upgraded:
                t = self.request.transport
                if t is None or t.is_closing():
                    self.closed = True
                    return False
                t.write(data)
                await self.request.protocol.writer.drain() if hasattr(
                    self.request.protocol, "writer") and self.request.protocol.writer else None
            else:
                await self.resp.write(data)
            return True
        except (ConnectionError, RuntimeError, AttributeError):
            self.closed = True
            return False

    async def read(self) -> bytes:
        """Client bytes; b"" at EOF."""
        return await self.reader.queue.get()

    async def finish(self) -> web.StreamResponse:
        if self.upgraded:
            t = self.request.transport
            if t is not None and not t.is_closing():
                if t.can_write_eof():
                    try:
                        t.write_eof()
                    except OSError:
                        pass
                t.close()
        else:
            try:
                await self.resp.write_eof()
            except ConnectionError:
                pass
        return self.resp


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data
