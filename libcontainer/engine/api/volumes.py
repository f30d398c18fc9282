"""/volumes (the local driver)."""
from __future__ import annotations

from aiohttp import web

from ..errors import BadRequest
from .base import blocking, body_json, daemon, filtered, jresp, labels_match, qbool, qfilters


async def list_volumes(request):
    eng = daemon(request).engine
    filters = qfilters(request)
    vols = await blocking(request, eng.volumes.list)
    tests = {"name": lambda v, vals: any(x in v["Name"] for x in vals),
             "dangling": lambda v, vals: (not eng.volumes.in_use(v["Name"])) == (vals[0] in ("true", "1")),
             "label": lambda v, vals: labels_match(v["Labels"], vals),
             "driver": lambda v, vals: "local" in vals}
    return jresp({"Volumes": filtered(vols, filters, tests), "Warnings": None})


async def create(request):
    eng = daemon(request).engine
    body = await body_json(request, {}) or {}
    if not isinstance(body, dict):
        raise BadRequest("the request body is not a JSON object")
    vol, made = await blocking(request, eng.volumes.create, body.get("Name") or "",
                               body.get("Labels"), body.get("Driver") or "local",
                               body.get("DriverOpts"))
    if made:
        eng.events.emit("volume", "create", vol["Name"], {"driver": "local"})
    return jresp(vol, 201)


async def inspect(request):
    return jresp(await blocking(request, daemon(request).engine.volumes.inspect, request.match_info["name"]))


async def remove(request):
    eng = daemon(request).engine
    name = request.match_info["name"]
    await blocking(request, eng.volumes.remove, name, qbool(request, "force") and False)
    eng.events.emit("volume", "destroy", name, {"driver": "local"})
    return web.Response(status=204)


async def prune(request):
    eng = daemon(request).engine
    gone = []
    for v in await blocking(request, eng.volumes.list):
        if not eng.volumes.in_use(v["Name"]):
            await blocking(request, eng.volumes.remove, v["Name"])
            eng.events.emit("volume", "destroy", v["Name"], {"driver": "local"})
            gone.append(v["Name"])
    return jresp({"VolumesDeleted": gone or None, "SpaceReclaimed": 0})


ROUTES = [("GET", "/volumes", list_volumes), ("POST", "/volumes/create", create),
          ("POST", "/volumes/prune", prune), ("GET", "/volumes/{name}", inspect),
          ("DELETE", "/volumes/{name}", remove)]
