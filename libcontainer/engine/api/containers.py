"""/containers and /exec routes."""
from __future__ import annotations

import asyncio
import os
import subprocess
import time

from aiohttp import web

from .. import execs
from ..errors import BadRequest, Conflict
from ..records import parse_time
from . import streams
from .base import (Hijacked, blocking, body_json, daemon, go_fields, jresp, labels_match, qbool,
                   qfilters, qint, qtime)

PRIVATE = ("Monitor", "_stopping", "_late_nets")
ACTIVE = ("running", "paused", "restarting", "starting")


def public(rec: dict) -> dict:
    out = {k: v for k, v in rec.items() if k not in PRIVATE}
    st = dict(out["State"])
    if st["Status"] == "starting":
        st["Status"] = "created"
    out["State"] = st
    return out


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} seconds"
    if s < 3600:
        m = s // 60
        return "About a minute" if m == 1 else f"{m} minutes"
    h = s // 3600
    if h < 48:
        return "About an hour" if h == 1 else f"{h} hours"
    return f"{h // 24} days"


def _status_text(st: dict) -> str:
    now = time.time()
    if st["Status"] in ("running", "paused"):
        txt = "Up " + _ago(now - parse_time(st["StartedAt"]))
        if st.get("Health"):
            txt += f" ({'health: starting' if st['Health']['Status'] == 'starting' else st['Health']['Status']})"
        return txt + (" (Paused)" if st["Status"] == "paused" else "")
    if st["Status"] == "restarting":
        return f"Restarting ({st['ExitCode']}) {_ago(now - parse_time(st['FinishedAt']))} ago"
    if st["Status"] == "exited":
        return f"Exited ({st['ExitCode']}) {_ago(now - parse_time(st['FinishedAt']))} ago"
    if st["Status"] == "removing":
        return "Removal In Progress"
    return "Created"


def _summary(rec: dict) -> dict:
    ports = []
    for cport, binds in (rec["NetworkSettings"].get("Ports") or {}).items():
        num, _, proto = cport.partition("/")
        if not binds:
            ports.append({"PrivatePort": int(num), "Type": proto or "tcp"})
        for b in binds or []:
            ports.append({"IP": b["HostIp"], "PrivatePort": int(num), "PublicPort": int(b["HostPort"]),
                          "Type": proto or "tcp"})
    st = rec["State"]
    return {"Id": rec["Id"], "Names": [rec["Name"]], "Image": rec["Config"]["Image"],
            "ImageID": rec["Image"], "Command": " ".join([rec["Path"]] + rec["Args"]),
            "Created": int(parse_time(rec["Created"])), "Ports": ports,
            "Labels": rec["Config"].get("Labels") or {},
            "State": "created" if st["Status"] == "starting" else st["Status"],
            "Status": _status_text(st),
            "HostConfig": {"NetworkMode": rec["HostConfig"].get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": rec["NetworkSettings"].get("Networks") or {}},
            "Mounts": rec.get("Mounts") or []}


def _match(rec: dict, filters: dict) -> bool:
    for k, vals in filters.items():
        if k == "id":
            ok = any(rec["Id"].startswith(v) for v in vals)
        elif k == "name":
            import re

            ok = any(re.search(v, rec["Name"].lstrip("/")) or re.search(v, rec["Name"]) for v in vals)
        elif k == "label":
            ok = labels_match(rec["Config"].get("Labels"), vals)
        elif k == "status":
            ok = rec["State"]["Status"] in vals
        elif k == "exited":
            ok = rec["State"]["Status"] == "exited" and str(rec["State"]["ExitCode"]) in vals
        elif k == "ancestor":
            ok = rec["Config"]["Image"] in vals or rec["Image"] in vals or \
                any(rec["Image"][7:].startswith(v) for v in vals)
        elif k == "network":
            ok = any(v in (rec["NetworkSettings"].get("Networks") or {}) for v in vals)
        elif k == "volume":
            ok = any(m.get("Name") in vals or m.get("Destination") in vals for m in rec.get("Mounts") or [])
        else:
            raise BadRequest(f"invalid filter '{k}'")
        if not ok:
            return False
    return True


async def list_containers(request):
    eng = daemon(request).engine
    filters = qfilters(request)
    all_ = qbool(request, "all")
    limit = qint(request, "limit", -1)
    recs = sorted(eng.list(), key=lambda r: r["Created"], reverse=True)
    out = [_summary(r) for r in recs if (all_ or r["State"]["Status"] in ("running", "paused", "restarting"))
           and _match(r, filters)]
    if limit > 0:
        out = out[:limit]
    return jresp(out)


async def create(request):
    eng = daemon(request).engine
    body = await body_json(request, None)
    if body is None:
        raise BadRequest("config cannot be empty in order to create a container")
    rec = await blocking(request, eng.create, body, request.query.get("name", ""))
    return jresp({"Id": rec["Id"], "Warnings": []}, 201)


async def inspect(request):
    rec = daemon(request).engine.get(request.match_info["id"])
    return jresp(public(rec))


async def start(request):
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    if request.query.get("checkpoint"):
        raise BadRequest("checkpoints are not supported")
    await blocking(request, d.engine.start, rec["Id"], True)
    # attaches made before the start connect to the monitor first, then it reads output
    pend = d.pending_attach.pop(rec["Id"], [])
    for started, _connected in pend:
        if not started.done():
            started.set_result(None)
    if pend:
        await asyncio.wait([c for _, c in pend], timeout=5)
    await streams.send_frame(d.engine._dir(rec["Id"]), 3)
    return web.Response(status=204)


async def _wait_until(d, cid: str, pred, timeout=None) -> bool:
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        rec = d.engine.containers.get(cid)
        if pred(rec):
            return True
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            return False
        await d.changed(cid, left)


async def _stop(d, rec: dict, t: int | None) -> bool:
    cid = rec["Id"]
    if rec["State"]["Status"] not in ACTIVE:
        return False
    d.engine.mark_stopping(rec)
    if rec["State"]["Status"] not in ("running", "paused"):
        return True
    if t is None:
        t = rec["Config"].get("StopTimeout")
        t = 10 if t is None else t
    not_running = lambda r: r is None or r["State"]["Status"] not in ("running", "paused")  # noqa
    try:
        if rec["State"]["Status"] == "paused":
            await d.run(d.engine.unpause, cid)
        await d.run(d.engine._signal, rec, d.engine.stop_signal(rec))
    except Conflict:
        pass
    if t < 0 or not await _wait_until(d, cid, not_running, t):
        try:
            await d.run(d.engine._signal, rec, 9)
        except Conflict:
            pass
        await _wait_until(d, cid, not_running)
    return True


async def stop(request):
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    t = request.query.get("t")
    stopped = await _stop(d, rec, int(t) if t not in (None, "") else None)
    if not stopped:
        return web.Response(status=304)
    d.engine.events.emit("container", "stop", rec["Id"], d.engine._attrs(rec))
    return web.Response(status=204)


async def restart(request):
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    t = request.query.get("t")
    await _stop(d, rec, int(t) if t not in (None, "") else None)
    await blocking(request, d.engine.start, rec["Id"])
    d.engine.events.emit("container", "restart", rec["Id"], d.engine._attrs(rec))
    return web.Response(status=204)


async def kill(request):
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    sig = request.query.get("signal") or "SIGKILL"
    from ..daemon import parse_signal

    n = parse_signal(sig)
    if n in (9, 15):
        d.engine.mark_stopping(rec)
    await blocking(request, d.engine.kill, rec["Id"], n)
    if n == 9:  # dockerd: a SIGKILL returns once the container is down
        await _wait_until(d, rec["Id"], lambda r: r is None or r["State"]["Status"] not in
                          ("running", "paused"), 10)
    return web.Response(status=204)


async def wait(request):
    """dockerd answers the headers at once (the CLI's wait returns then) and the body at
    the condition: not-running, next-exit, removed."""
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    cid = rec["Id"]
    cond = request.query.get("condition") or "not-running"
    if cond not in ("not-running", "next-exit", "removed"):
        raise BadRequest(f"invalid condition: {cond!r}")
    mark = rec["State"]["FinishedAt"], rec["State"]["Status"]
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)

    def done(r):
        if cond == "removed":
            return r is None
        if r is None:
            return True
        st = r["State"]
        if st["Status"] in ACTIVE or st["Status"] == "created" and cond == "next-exit":
            return False
        if cond == "next-exit":
            return (st["FinishedAt"], st["Status"]) != mark
        return True
    try:
        await _wait_until(d, cid, done)
        err = rec["State"].get("Error") or None
        await resp.write(b'{"Error":%s,"StatusCode":%d}\n' % (
            (b'{"Message":%s}' % _q(err)) if err else b"null", rec["State"]["ExitCode"]))
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


def _q(s: str) -> bytes:
    import json

    return json.dumps(s).encode()


async def logs(request):
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    if (rec["HostConfig"].get("LogConfig") or {}).get("Type") == "none":
        raise BadRequest("configured logging driver does not support reading")
    stdout, stderr = qbool(request, "stdout"), qbool(request, "stderr")
    if not stdout and not stderr:
        raise BadRequest("Bad parameters: you must choose at least one stream")
    tail_s = request.query.get("tail", "all")
    tail = -1 if tail_s in ("all", "") else int(tail_s) if tail_s.lstrip("-").isdigit() else -1
    since = qtime(request, "since")
    until = qtime(request, "until")
    tty = rec["Config"]["Tty"]
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"
                                       if tty else "application/vnd.docker.multiplexed-stream"})
    await resp.prepare(request)

    async def write(data):
        try:
            await resp.write(data)
            return True
        except ConnectionError:
            return False
    cid = rec["Id"]
    running = lambda: cid in d.engine.containers and rec["State"]["Status"] in ACTIVE  # noqa
    try:
        await streams.send_logs(write, d.engine._dir(cid), tty, stdout, stderr, since, until,
                                tail, qbool(request, "timestamps"), qbool(request, "follow"), running)
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


async def attach(request):
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    cid = rec["Id"]
    tty = rec["Config"]["Tty"]
    try:
        keys = streams.parse_detach_keys(request.query.get("detachKeys", ""))
    except ValueError as e:
        raise BadRequest(str(e)) from None
    want_in, want_out, want_err = (qbool(request, "stdin"), qbool(request, "stdout"),
                                   qbool(request, "stderr"))
    h = Hijacked(request, multiplexed=not tty)
    await h.start()
    if qbool(request, "logs"):
        await streams.send_logs(h.write, d.engine._dir(cid), tty, want_out, want_err, 0, 0, -1,
                                False, False, lambda: False)
    if qbool(request, "stream"):
        connected = None
        if rec["State"]["Status"] in ("created", "starting", "exited", "restarting") and \
                cid in d.engine.containers:
            loop = asyncio.get_running_loop()
            started, connected = loop.create_future(), loop.create_future()
            d.pending_attach.setdefault(cid, []).append((started, connected))
            done, _ = await asyncio.wait({started, h.reader.lost},
                                         return_when=asyncio.FIRST_COMPLETED)
            if started not in done:  # the client went before the start
                lst = d.pending_attach.get(cid, [])
                if (started, connected) in lst:
                    lst.remove((started, connected))
                await h.finish()
                return h.resp
        if rec["State"]["Status"] in ("running", "paused"):
            await streams.relay_attach(
                h, d.engine._dir(cid), tty, want_in, want_out,
                want_err, rec["Config"]["StdinOnce"], keys,
                on_connected=(lambda: connected.done() or connected.set_result(None)) if connected else None)
        elif connected is not None and not connected.done():
            connected.set_result(None)
    await h.finish()
    return h.resp


async def resize(request):
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    h, w = qint(request, "h"), qint(request, "w")
    if rec["State"]["Status"] not in ("running", "paused"):
        raise Conflict(f"Container {rec['Id']} is not running")
    await streams.send_frame(d.engine._dir(rec["Id"]), 2,
                             h.to_bytes(2, "big") + w.to_bytes(2, "big"))
    return web.Response(status=200)


async def remove(request):
    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    await blocking(request, d.engine.remove, rec["Id"], qbool(request, "force"), qbool(request, "v"))
    return web.Response(status=204)


async def pause(request):
    d = daemon(request)
    await blocking(request, d.engine.pause, request.match_info["id"])
    return web.Response(status=204)


async def unpause(request):
    d = daemon(request)
    await blocking(request, d.engine.unpause, request.match_info["id"])
    return web.Response(status=204)


async def top(request):
    d = daemon(request)
    pids = set(await blocking(request, d.engine.top, request.match_info["id"]))
    args = (request.query.get("ps_args") or "-ef").split()
    r = await blocking(request, subprocess.run, ["ps"] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise BadRequest(f"ps: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    titles = lines[0].split()
    pid_col = titles.index("PID") if "PID" in titles else 1
    procs = []
    for ln in lines[1:]:
        f = ln.split(None, len(titles) - 1)
        if len(f) > pid_col and f[pid_col].isdigit() and int(f[pid_col]) in pids:
            procs.append(f)
    return jresp({"Titles": titles, "Processes": procs})


async def rename(request):
    d = daemon(request)
    name = request.query.get("name", "")
    if not name:
        raise BadRequest("Neither old nor new names may be empty")
    await blocking(request, d.engine.rename, request.match_info["id"], name)
    return web.Response(status=204)


async def prune(request):
    from ...images.changes import rw_size

    d = daemon(request)
    gone = []
    reclaimed = 0
    for rec in d.engine.list():
        if rec["State"]["Status"] in ("exited", "created", "dead") and _match(rec, {
                k: v for k, v in qfilters(request).items() if k == "label"}):
            size = await blocking(request, rw_size, os.path.join(d.engine._dir(rec["Id"]), "bundle"),
                                  d.engine.store.root)
            try:
                await blocking(request, d.engine.remove, rec["Id"])
                gone.append(rec["Id"])
                reclaimed += size
            except Conflict:
                pass
    return jresp({"ContainersDeleted": gone or None, "SpaceReclaimed": reclaimed})


async def update(request):
    """docker update: resources of a running container (libcontainer's update), kept in
    HostConfig for its next start; a restart policy too."""
    import libcontainer

    from .. import oci

    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    body = await body_json(request, {}) or {}
    if not isinstance(body, dict):
        raise BadRequest("the request body is not a JSON object")
    keys = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota",
            "CpuPeriod", "CpusetCpus", "CpusetMems", "PidsLimit")
    new_hc = dict(rec["HostConfig"], **{k: body[k] for k in keys if body.get(k) not in (None, "")})
    res = oci.resources(new_hc)

    def run():
        if rec["State"]["Status"] in ("running", "paused") and res:
            try:
                libcontainer.load(rec["Id"], d.engine.runtime_root).update(res)
            except libcontainer.ContainerError as e:
                raise BadRequest(f"Cannot update container {rec['Id']}: {e}") from None
        with d.engine.lock:
            rec["HostConfig"] = new_hc
            if body.get("RestartPolicy", {}).get("Name"):
                rec["HostConfig"]["RestartPolicy"] = body["RestartPolicy"]
            d.engine.save(rec)
        import json as _json

        path = os.path.join(d.engine._dir(rec["Id"]), "bundle", "config.json")
        with open(path) as f:
            spec = _json.load(f)
        spec["linux"]["resources"] = dict(spec["linux"].get("resources") or {}, **res)
        with open(path + ".tmp", "w") as f:
            _json.dump(spec, f)
        os.rename(path + ".tmp", path)
    await blocking(request, run)
    d.engine.events.emit("container", "update", rec["Id"], d.engine._attrs(rec))
    return jresp({"Warnings": []})


# ---- stats -----------------------------------------------------------------------------------

def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * (10**9 // (os.sysconf("SC_CLK_TCK") or 100))


def _stats_once(d, rec: dict) -> dict:
    """docker's stats document from the container's cgroups (libcontainer's stats)."""
    import libcontainer

    from ..records import now

    raw = {}
    if rec["State"]["Status"] in ("running", "paused"):
        try:
            cg = libcontainer.load(rec["Id"], d.engine.runtime_root)._cgroups()
            raw = cg.stats() if cg is not None else {}
        except libcontainer.ContainerError:
            raw = {}
    cpu = (raw.get("cpu") or {}).get("usage") or {}
    mem = raw.get("memory") or {}
    usage = mem.get("usage") or {}
    return {"read": now(), "preread": "0001-01-01T00:00:00Z", "id": rec["Id"], "name": rec["Name"],
            "pids_stats": {"current": (raw.get("pids") or {}).get("current", 0)},
            "blkio_stats": {"io_service_bytes_recursive": None},
            "num_procs": 0, "storage_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": cpu.get("total", 0),
                                        "percpu_usage": cpu.get("percpu") or None,
                                        "usage_in_kernelmode": cpu.get("kernel", 0),
                                        "usage_in_usermode": cpu.get("user", 0)},
                          "system_cpu_usage": _system_cpu_ns(), "online_cpus": os.cpu_count(),
                          "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "memory_stats": {"usage": usage.get("usage", 0), "max_usage": usage.get("max", 0),
                             "limit": usage.get("limit", 0) or _mem_total(),
                             "failcnt": usage.get("failcnt", 0), "stats": mem.get("raw") or {}},
            "networks": {}}


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except OSError:
        return 0


async def stats(request):
    import json

    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    stream = qbool(request, "stream", True) and not qbool(request, "one-shot")
    if not stream:
        first = await blocking(request, _stats_once, d, rec)
        if not qbool(request, "one-shot"):  # docker: a second sample a second later, with precpu
            await asyncio.sleep(1)
            second = await blocking(request, _stats_once, d, rec)
            second["precpu_stats"], second["preread"] = first["cpu_stats"], first["read"]
            first = second
        return jresp(first)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    prev = None
    try:
        while True:
            cur = await blocking(request, _stats_once, d, rec)
            if prev:
                cur["precpu_stats"], cur["preread"] = prev["cpu_stats"], prev["read"]
            else:
                cur["precpu_stats"] = {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0}
            await resp.write(json.dumps(cur).encode() + b"\n")
            prev = cur
            if rec["State"]["Status"] not in ("running", "paused"):
                break
            await asyncio.sleep(1)
    except ConnectionError:
        pass
    return resp


# ---- archive (docker cp) -------------------------------------------------------------------

def _rootfs(d, ref: str) -> tuple:
    rec = d.engine.get(ref)
    root = os.path.join(d.engine._dir(rec["Id"]), "bundle", "rootfs")
    if not os.path.ismount(root) and not os.listdir(root):
        raise Conflict(f"container {rec['Id'][:12]} has no root filesystem mounted")
    return rec, root


def _mounts(rec) -> tuple:
    """(destination, source) of the container's volumes and binds: docker cp sees them."""
    return tuple((m["Destination"], m["Source"]) for m in rec.get("Mounts") or ()
                 if m.get("Source") and m.get("Destination"))


def _cp_target(request) -> tuple:
    """(rootfs, path, volumes and binds) of a `docker cp` request."""
    rec, root = _rootfs(daemon(request), request.match_info["id"])
    path = request.query.get("path", "")
    if not path:
        raise BadRequest("path: not given")
    return root, path, _mounts(rec)


async def archive_head(request):
    from .. import archive

    root, path, mounts = _cp_target(request)
    hdr = await blocking(request, archive.stat_header, root, path, mounts)
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": hdr})


async def archive_get(request):
    from .. import archive

    root, path, mounts = _cp_target(request)
    hdr = await blocking(request, archive.stat_header, root, path, mounts)
    data = await blocking(request, archive.get, root, path, mounts)
    return web.Response(body=data, headers={"X-Docker-Container-Path-Stat": hdr,
                                            "Content-Type": "application/x-tar"})


async def archive_put(request):
    from .. import archive

    root, path, mounts = _cp_target(request)
    data = await request.read()
    await blocking(request, archive.put, root, path, data, mounts)
    return web.Response(status=200)


async def export(request):
    """docker export: the container's root filesystem as a tar."""
    from .. import archive

    d = daemon(request)
    _, root = _rootfs(d, request.match_info["id"])
    data = await blocking(request, archive.get, root, "/")
    return web.Response(body=data, headers={"Content-Type": "application/x-tar"})


async def changes(request):
    """docker diff: the upper dir of the container's overlay against its image's layers."""
    from ...images.changes import bundle_changes
    from ...images.errors import ImageError

    d = daemon(request)
    rec = d.engine.get(request.match_info["id"])
    try:
        out = await blocking(request, bundle_changes, os.path.join(d.engine._dir(rec["Id"]), "bundle"),
                             d.engine.store.root)
    except ImageError as e:
        raise Conflict(str(e)) from None
    return jresp(out or None)  # dockerd: null when nothing changed


# ---- exec ----------------------------------------------------------------------------------

async def exec_create(request):
    d = daemon(request)
    body = await body_json(request, {})
    if not isinstance(body, dict):
        raise BadRequest("the request body is not a JSON object")
    body = go_fields(body, execs.FIELDS)
    try:
        streams.parse_detach_keys(body.get("DetachKeys") or "")
    except (ValueError, AttributeError):
        raise BadRequest(f"Invalid escape keys ({body.get('DetachKeys')}) provided") from None
    ex = execs.create(d.engine, request.match_info["id"], body)
    return jresp({"Id": ex.id}, 201)


async def exec_start(request):
    d = daemon(request)
    ex = execs.get(d.engine, request.match_info["id"])
    body = await body_json(request, {}) or {}
    # as dockerd: the exec's own Tty gives it a pty; the start's Tty only says whether the
    # stream is raw or multiplexed (docker-py starts a tty exec with Tty false: frames)
    tty = bool(ex.cfg.get("Tty"))
    raw = bool(body.get("Tty"))
    if body.get("Detach"):
        fds = await blocking(request, execs.start, d.engine, ex)
        asyncio.ensure_future(_drain(fds, ex))
        return web.Response(status=200)
    # what would refuse the start is answered as an HTTP error, before the upgrade
    if ex.running or ex.exit_code is not None:
        raise Conflict(f"Error: Exec command {ex.id} has already run")
    rec = d.engine.get(ex.cid)
    if rec["State"]["Status"] != "running":
        raise Conflict(f"Container {rec['Id']} is not running")
    h = Hijacked(request, multiplexed=not raw)
    # the 101 goes before the process starts (as dockerd): a client whose HTTP reader
    # buffered past the headers would lose output that came with them (docker-py does)
    await h.start()
    try:
        fds = await blocking(request, execs.start, d.engine, ex)
    except Exception as e:
        # dockerd: the stream is open, the error is written to it, the exit is 126/127
        msg = str(e)
        ex.exit_code = 127 if "not found" in msg or "No such file" in msg else 126
        await h.write((msg + "\r\n").encode() if raw else streams.frame(1, (msg + "\r\n").encode()))
        ex.done.set()
        await h.finish()
        return h.resp
    async def detached():
        # dockerd 20.10: the detach keys end the exec's stream with this error and the
        # process with it (exit code 126), not a detach that leaves it running
        msg = "exec attach failed: error on attach stdin: read escape sequence\r\n".encode()
        await h.write(msg if raw else streams.frame(1, msg))
        await blocking(request, execs.abort, ex, 126)
    await streams.relay_exec(h, fds, tty, raw, ex, detached)
    await h.finish()
    return h.resp


async def _drain(fds, ex):
    """A detached exec's output goes nowhere, but its pipes must not fill."""
    inp, out, err = fds
    for fd in (out, err):
        if fd >= 0:
            os.set_blocking(fd, False)

    async def pump(fd):
        while await streams.read_fd(fd):
            pass
    await asyncio.gather(*[pump(fd) for fd in {out, err} if fd >= 0])
    for fd in {inp, out, err}:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


async def exec_inspect(request):
    ex = execs.get(daemon(request).engine, request.match_info["id"])
    return jresp(ex.inspect())


async def exec_resize(request):
    ex = execs.get(daemon(request).engine, request.match_info["id"])
    execs.resize(ex, qint(request, "h"), qint(request, "w"))
    return web.Response(status=200)


ROUTES = [("GET", "/containers/json", list_containers), ("POST", "/containers/create", create),
          ("POST", "/containers/prune", prune),
          ("GET", "/containers/{id}/json", inspect), ("POST", "/containers/{id}/start", start),
          ("POST", "/containers/{id}/stop", stop), ("POST", "/containers/{id}/restart", restart),
          ("POST", "/containers/{id}/kill", kill), ("POST", "/containers/{id}/wait", wait),
          ("GET", "/containers/{id}/logs", logs), ("POST", "/containers/{id}/attach", attach),
          ("POST", "/containers/{id}/resize", resize), ("DELETE", "/containers/{id}", remove),
          ("POST", "/containers/{id}/pause", pause), ("POST", "/containers/{id}/unpause", unpause),
          ("GET", "/containers/{id}/top", top), ("POST", "/containers/{id}/rename", rename),
          ("POST", "/containers/{id}/exec", exec_create), ("GET", "/containers/{id}/stats", stats),
          ("POST", "/containers/{id}/update", update),
          ("HEAD", "/containers/{id}/archive", archive_head), ("GET", "/containers/{id}/archive", archive_get),
          ("PUT", "/containers/{id}/archive", archive_put), ("GET", "/containers/{id}/export", export),
          ("GET", "/containers/{id}/changes", changes), ("POST", "/exec/{id}/start", exec_start),
          ("GET", "/exec/{id}/json", exec_inspect), ("POST", "/exec/{id}/resize", exec_resize)]
