"""/networks (the bridge driver, through libcontainer.network)."""
from __future__ import annotations

from aiohttp import web

from ..errors import BadRequest
from .base import blocking, body_json, daemon, filtered, jresp, labels_match, qfilters


_BUILTIN = ("bridge", "host", "none")
FILTERS = {
    "name": lambda n, vals: any(v in n["Name"] for v in vals),
    "id": lambda n, vals: any(n["Id"].startswith(v) for v in vals),
    "label": lambda n, vals: labels_match(n["Labels"], vals),
    "driver": lambda n, vals: n["Driver"] in vals,
    "type": lambda n, vals: any((v == "builtin") == (n["Name"] in _BUILTIN) for v in vals),
    "scope": lambda n, vals: "local" in vals,
}


async def list_networks(request):
    filters = qfilters(request)
    nets = await blocking(request, daemon(request).engine.networks.list)
    return jresp(filtered(nets, filters, FILTERS))


async def create(request):
    eng = daemon(request).engine
    body = await body_json(request, {}) or {}
    if not isinstance(body, dict) or not body.get("Name"):
        raise BadRequest("network name must be given")
    cfg = ((body.get("IPAM") or {}).get("Config") or [{}])
    subnet = (cfg[0] or {}).get("Subnet", "") if cfg else ""
    gw = (cfg[0] or {}).get("Gateway", "") if cfg else ""
    meta = await blocking(request, eng.networks.create, body["Name"], subnet, gw,
                          body.get("Labels"), body.get("Driver") or "bridge",
                          bool(body.get("Internal")), body.get("Options"),
                          (body.get("IPAM") or {}).get("Options"))
    eng.events.emit("network", "create", meta["Id"], {"name": body["Name"], "type": "bridge"})
    return jresp({"Id": meta["Id"], "Warning": ""}, 201)


async def inspect(request):
    eng = daemon(request).engine
    name = await blocking(request, eng.networks.get, request.match_info["id"])
    return jresp(await blocking(request, eng.networks.inspect, name))


async def remove(request):
    eng = daemon(request).engine
    name = await blocking(request, eng.networks.get, request.match_info["id"])
    nid = eng.networks.meta.get(name, {}).get("Id", name)
    await blocking(request, eng.networks.remove, name)
    eng.events.emit("network", "destroy", nid, {"name": name, "type": "bridge"})
    return web.Response(status=204)


async def prune(request):
    eng = daemon(request).engine
    gone = []
    for name in list(eng.networks.meta):
        if name == "bridge" or eng.networks.members.get(name):
            continue
        await blocking(request, eng.networks.remove, name)
        gone.append(name)
    return jresp({"NetworksDeleted": gone or None})


async def connect(request):
    d = daemon(request)
    eng = d.engine
    body = await body_json(request, {}) or {}
    rec = eng.get(body.get("Container") or "")
    import os

    def run():
        with eng.lock:
            eng.networks.connect(rec, os.path.join(eng._dir(rec["Id"]), "bundle"),
                                 request.match_info["id"], body.get("EndpointConfig") or {})
            eng.save(rec)
    await blocking(request, run)
    eng.events.emit("network", "connect", request.match_info["id"], {"container": rec["Id"]})
    return web.Response(status=200)


async def disconnect(request):
    d = daemon(request)
    eng = d.engine
    body = await body_json(request, {}) or {}
    rec = eng.get(body.get("Container") or "")
    import os

    def run():
        with eng.lock:
            eng.networks.disconnect(rec, os.path.join(eng._dir(rec["Id"]), "bundle"),
                                    request.match_info["id"])
            eng.save(rec)
    await blocking(request, run)
    eng.events.emit("network", "disconnect", request.match_info["id"], {"container": rec["Id"]})
    return web.Response(status=200)


ROUTES = [("POST", "/networks/{id}/connect", connect), ("POST", "/networks/{id}/disconnect", disconnect),
          ("GET", "/networks", list_networks), ("POST", "/networks/create", create),
          ("POST", "/networks/prune", prune), ("GET", "/networks/{id}", inspect),
          ("DELETE", "/networks/{id}", remove)]
