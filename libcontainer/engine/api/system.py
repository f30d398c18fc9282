"""_ping, version, info, events, system/df."""
from __future__ import annotations

import asyncio
import json
import os
import platform
import time

from aiohttp import web

from ..daemon import RUNTIMES
from ..events import matches
from ..records import parse_time
from .base import API_VERSION, MIN_API_VERSION, blocking, daemon, jresp, qfilters, qtime

PING_HEADERS = {"API-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux",
                "Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
                "Pragma": "no-cache"}


async def ping(request):
    body = b"" if request.method == "HEAD" else b"OK"
    return web.Response(body=body, headers=PING_HEADERS, content_type="text/plain")


def _version() -> dict:
    from ... import __version__

    u = os.uname()
    return {"Platform": {"Name": "runner daemon"},
            "Components": [{"Name": "Engine", "Version": __version__,
                            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                        "Os": "linux", "Arch": "amd64" if u.machine == "x86_64" else u.machine,
                                        "KernelVersion": u.release}},
                           {"Name": "runner", "Version": __version__, "Details": {}}],
            "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "", "GoVersion": "python" + platform.python_version(), "Os": "linux",
            "Arch": "amd64" if u.machine == "x86_64" else u.machine, "KernelVersion": u.release,
            "BuildTime": ""}


async def version(request):
    return jresp(_version())


async def info(request):
    d = daemon(request)
    eng = d.engine
    recs = eng.list()
    count = lambda s: sum(1 for r in recs if r["State"]["Status"] == s)  # noqa: E731
    images = await blocking(request, eng.store.images)
    u = os.uname()
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    return jresp({
        "ID": "runner", "Containers": len(recs), "ContainersRunning": count("running"),
        "ContainersPaused": count("paused"), "ContainersStopped": count("exited") + count("created"),
        "Images": len(images), "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False, "CpuCfsPeriod": True,
        "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
        "IPv4Forwarding": True, "BridgeNfIptables": False, "BridgeNfIp6tables": False,
        "Debug": False, "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": False, "NGoroutines": 0, "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if v2 else "1", "NEventsListener": 0, "KernelVersion": u.release,
        "OperatingSystem": _os_name(), "OSVersion": "", "OSType": "linux",
        "Architecture": u.machine, "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                           "Mirrors": []},
        "NCPU": os.cpu_count(), "MemTotal": mem, "DockerRootDir": eng.root, "HttpProxy": "",
        "HttpsProxy": "", "NoProxy": "", "Name": u.nodename, "Labels": [],
        "ExperimentalBuild": False, "ServerVersion": _version()["Version"],
        "Runtimes": {n: {"path": "libcontainer"} for n in RUNTIMES}, "DefaultRuntime": "runner",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=default"] + (["name=rootless"] if eng.rootless else []),
        "Warnings": None})


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


async def events(request):
    d = daemon(request)
    filters = qfilters(request)
    since = qtime(request, "since")
    until = qtime(request, "until")
    queue: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def push(ev):
        loop.call_soon_threadsafe(queue.put_nowait, ev)
    past = d.engine.events.subscribe(push)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        await resp.prepare(request)
        for ev in past:
            if since and ev["timeNano"] / 1e9 >= since and (not until or ev["timeNano"] / 1e9 <= until) \
                    and matches(ev, filters):
                await resp.write(json.dumps(ev).encode() + b"\n")
        while True:
            timeout = None
            if until:
                timeout = until - time.time()
                if timeout <= 0:
                    break
            try:
                ev = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                break
            if matches(ev, filters):
                await resp.write(json.dumps(ev).encode() + b"\n")
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        d.engine.events.unsubscribe(push)
    return resp


def _df(eng) -> dict:
    from ..logs import files

    imgs = eng.store.images()
    containers = []
    for r in eng.list():
        size = 0
        for p in files(eng._dir(r["Id"])):
            try:
                size += os.path.getsize(p)
            except OSError:
                pass
        containers.append({"Id": r["Id"], "Names": [r["Name"]], "Image": r["Config"]["Image"],
                           "ImageID": r["Image"], "Command": " ".join([r["Path"]] + r["Args"]),
                           "Created": int(parse_time(r["Created"])), "State": r["State"]["Status"],
                           "Status": r["State"]["Status"], "SizeRw": size, "SizeRootFs": 0,
                           "Labels": r["Config"].get("Labels") or {}, "Mounts": []})
    vols = []
    for v in eng.volumes.list():
        size = 0
        for root, _, names in os.walk(v["Mountpoint"]):
            for n in names:
                try:
                    size += os.lstat(os.path.join(root, n)).st_size
                except OSError:
                    pass
        vols.append(dict(v, UsageData={"Size": size, "RefCount": len(eng.volumes.users.get(v["Name"], ()))}))
    from .images import summary

    return {"LayersSize": sum(i.size for i in imgs), "Images": [summary(eng, i) for i in imgs],
            "Containers": containers, "Volumes": vols, "BuildCache": []}


async def df(request):
    return jresp(await blocking(request, _df, daemon(request).engine))


ROUTES = [("GET", "/_ping", ping), ("HEAD", "/_ping", ping), ("GET", "/version", version),
          ("GET", "/info", info), ("GET", "/events", events), ("GET", "/system/df", df)]
