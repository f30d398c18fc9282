"""`runner daemon`: the Docker Engine API (1.41, negotiated down like dockerd) over aiohttp,
on unix sockets, socket-activated fds (LISTEN_FDS) and TCP with mutual TLS. One asyncio
process; blocking engine work runs in a thread pool; containers live in their monitors, so
the daemon can stop and come back (live-restore)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import grp
import logging
import os
import re
import signal
import socket
import ssl
import stat
import sys
import traceback

from aiohttp import web

from ..daemon import Engine
from ..errors import BadRequest, EngineError
from .base import API_VERSION, MIN_API_VERSION, jresp

log = logging.getLogger("runner.daemon")
VERSION_RE = re.compile(r"^/v(\d+\.\d+)(/.*)$")


def _logged(fn) -> None:
    """A scheduled task (a restart, a removal's files): its failure goes to the log with
    its traceback, not to asyncio's "exception was never retrieved"."""
    try:
        fn()
    except Exception:
        log.error("scheduled %s: %s", getattr(fn, "__qualname__", fn), traceback.format_exc())


class Daemon:
    """The process-wide objects the routes share; the engine's hooks into the loop."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, pool):
        self.engine = engine
        self.loop = loop
        self.pool = pool
        self.waiters: dict = {}      # cid → [future], woken on every change
        self.watched: dict = {}      # cid → pidfd of its monitor
        self.pending_attach: dict = {}  # cid → [future]: attaches waiting for the start
        engine.on_change = lambda cid: loop.call_soon_threadsafe(self._wake, cid)
        engine.on_running = lambda cid, pid, mon: loop.call_soon_threadsafe(self._watch, cid, mon)
        engine.schedule = lambda delay, fn: loop.call_soon_threadsafe(
            loop.call_later, delay, lambda: loop.run_in_executor(pool, _logged, fn))

    async def run(self, fn, *args):
        return await self.loop.run_in_executor(self.pool, lambda: fn(*args))

    def _wake(self, cid: str) -> None:
        for f in self.waiters.pop(cid, []):
            if not f.done():
                f.set_result(None)

    async def changed(self, cid: str, timeout: float | None = None) -> None:
        f = self.loop.create_future()
        self.waiters.setdefault(cid, []).append(f)
        try:
            await asyncio.wait_for(f, timeout)
        except asyncio.TimeoutError:
            pass

    def _watch(self, cid: str, monitor_pid: int) -> None:
        """The monitor's pidfd turns readable when it exits: then the exit is recorded."""
        old = self.watched.pop(cid, None)
        if old is not None:
            self.loop.remove_reader(old)
            os.close(old)
        try:
            fd = os.pidfd_open(monitor_pid)
        except OSError:
            self.loop.run_in_executor(self.pool, self.engine.exited, cid)
            return
        self.watched[cid] = fd

        def gone():
            if self.watched.get(cid) == fd:
                del self.watched[cid]
            self.loop.remove_reader(fd)
            os.close(fd)
            self.loop.run_in_executor(self.pool, self.engine.exited, cid)
        self.loop.add_reader(fd, gone)


@web.middleware
async def errors(request: web.Request, handler):
    """Docker's error JSON ({"message": …}) with dockerd's status codes, never a traceback."""
    try:
        m = VERSION_RE.match(request.path)
        if m:
            request["api_version"] = m.group(1)
            if _vtuple(m.group(1)) > _vtuple(API_VERSION):
                raise BadRequest(f"client version {m.group(1)} is too new. Maximum supported "
                                 f"API version is {API_VERSION}")
            if _vtuple(m.group(1)) < _vtuple(MIN_API_VERSION):
                raise BadRequest(f"client version {m.group(1)} is too old. Minimum supported "
                                 f"API version is {MIN_API_VERSION}, please upgrade your "
                                 "client to a newer version")
        if log.isEnabledFor(logging.DEBUG):
            import time

            t = time.perf_counter()
            try:
                return await handler(request)
            finally:
                log.debug("%s %s %.1f ms", request.method, request.path, (time.perf_counter() - t) * 1000)
        return await handler(request)
    except EngineError as e:
        if e.status == 304:
            return web.Response(status=304)
        return jresp({"message": str(e)}, e.status)
    except web.HTTPException as e:
        if e.status in (404, 405) and e.status != 101:
            msg = "page not found" if e.status == 404 else "method not allowed"
            log.info("%s %s: %s", request.method, request.path, msg)
            return jresp({"message": msg}, e.status)
        if e.status == 413:
            return jresp({"message": "request body too large"}, 413)
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as e:
        name = type(e).__name__
        if name in ("InvalidArgument", "ConfigError"):
            return jresp({"message": str(e)}, 400)
        if name in ("NotFound", "ImageNotFound"):
            return jresp({"message": str(e)}, 404)
        if name == "AlreadyExists":
            return jresp({"message": str(e)}, 409)
        log.error("%s %s: %s", request.method, request.path, traceback.format_exc())
        return jresp({"message": f"{e}" or name}, 500)


def _vtuple(v: str) -> tuple:
    return tuple(int(x) for x in v.split("."))


def make_app(daemon_obj: Daemon) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=64 * 1024 * 1024,
                          handler_args={"max_field_size": 65536})
    app["daemon"] = daemon_obj
    app["pool"] = daemon_obj.pool
    from . import containers, images, system, volumes, networks, swarm

    routes: list = []
    for mod in (system, images, containers, volumes, networks, swarm):
        routes += mod.ROUTES
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/v{version:[0-9.]+}" + path, handler)
    return app


# ---- transports --------------------------------------------------------------------------

def _unix_socket(path: str, group: str) -> socket.socket:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    gid = -1
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
        except KeyError:
            gid = -1
            if group != "docker":
                raise BadRequest(f"--group: no group {group!r}") from None
    if gid >= 0:
        try:
            os.chown(path, -1, gid)
        except PermissionError:
            if group != "docker":  # asked for by name: say so; the default is best effort
                raise BadRequest(f"--group {group}: cannot give the socket to it (not a member)") from None
    os.chmod(path, 0o660)
    s.listen(1024)
    return s


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listeners(opts: dict) -> list:
    """-H values → (kind, socket or (host, port), ssl context)."""
    hosts = opts["hosts"] or [f"unix://{opts['default_socket']}"]
    out = []
    for h in hosts:
        if h.startswith("unix://"):
            out.append(("unix", _unix_socket(h[7:], opts["group"]), None))
        elif h.startswith("fd://"):
            n = int(os.environ.get("LISTEN_FDS", "0") or 0)
            if os.environ.get("LISTEN_PID") not in (None, str(os.getpid())):
                n = 0
            if not n:
                raise BadRequest("-H fd://: no sockets were passed (LISTEN_FDS is not set for "
                                 "this process)")
            want = h[5:]
            fds = range(3, 3 + n) if not want else [int(want)]
            for fd in fds:
                if fd not in range(3, 3 + n):
                    raise BadRequest(f"-H {h}: fd {fd} was not passed (LISTEN_FDS={n})")
                s = socket.socket(fileno=fd)
                out.append(("sock", s, None))
        elif h.startswith("tcp://"):
            hostport = h[6:]
            host, _, port = hostport.rpartition(":")
            if not port.isdigit():
                raise BadRequest(f"-H {h}: want tcp://HOST:PORT")
            ctx = None
            if opts["tlsverify"]:
                for k in ("tlscacert", "tlscert", "tlskey"):
                    if not opts[k] or not os.path.exists(opts[k]):
                        raise BadRequest(f"--{k}: {opts[k] or 'not given'}: no such file "
                                         "(--tlsverify needs --tlscacert, --tlscert, --tlskey)")
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=opts["tlscacert"])
                ctx.load_cert_chain(opts["tlscert"], opts["tlskey"])
                ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: a client without a cert is refused
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            elif not (opts["insecure_tcp"] and _is_loopback(host)):
                raise BadRequest(f"-H {h}: plain TCP gives root to anyone who can connect; use "
                                 "--tlsverify with --tlscacert, --tlscert and --tlskey (or, on "
                                 "a loopback address only, --insecure-tcp)")
            out.append(("tcp", (host.strip("[]") or "127.0.0.1", int(port)), ctx))
        else:
            raise BadRequest(f"-H {h}: unknown transport (unix://, tcp://, fd://)")
    return out


async def serve(opts: dict) -> None:
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="engine")
    loop.set_default_executor(pool)
    lst = listeners(opts)
    engine = Engine(opts["data_root"], opts.get("exec_root", ""))
    d = Daemon(engine, loop, pool)
    await loop.run_in_executor(pool, engine.load)
    from .. import monitor

    if os.environ.get("RUNNER_DAEMON_NO_ZYGOTE") != "1":
        await loop.run_in_executor(pool, monitor.zygote.warm)
    app = make_app(d)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    sites = []
    for kind, what, ctx in lst:
        if kind in ("unix", "sock"):
            site = web.SockSite(runner, what)
        else:
            site = web.TCPSite(runner, what[0], what[1], ssl_context=ctx, reuse_address=True)
        await site.start()
        sites.append(site)
    if opts["pidfile"]:
        with open(opts["pidfile"], "w") as f:
            f.write(f"{os.getpid()}\n")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("API listening on %s", ", ".join(str(w if k != "tcp" else w) for k, w, _ in lst))
    try:
        await stop.wait()
    finally:
        # live-restore: containers stay up in their monitors; only the API goes
        await runner.cleanup()
        for kind, what, _ in lst:
            if kind == "unix":
                try:
                    os.unlink(what.getsockname())
                except OSError:
                    pass
        if opts["pidfile"]:
            try:
                os.unlink(opts["pidfile"])
            except OSError:
                pass
        pool.shutdown(wait=False, cancel_futures=True)
        monitor.zygote.close()


def main(opts: dict) -> int:
    logging.basicConfig(level=logging.DEBUG if opts.get("debug") else logging.INFO,
                        format="time=\"%(asctime)s\" level=%(levelname)s msg=\"%(message)s\"",
                        stream=sys.stderr)
    try:
        asyncio.run(serve(opts))
    except EngineError as e:
        sys.stderr.write(f"runner daemon: {e}\n")
        return 1
    return 0
