"""/images: list, inspect, history, create (pull, streamed JSON progress), tag, remove,
load, get, prune — over libcontainer.images' store."""
from __future__ import annotations

import asyncio
import json
import os
import tempfile

from aiohttp import web

from ..daemon import short_image_name
from ..errors import BadRequest, Conflict, NotFound
from ..records import parse_time
from .base import blocking, body_json, daemon, jresp, labels_match, qbool, qfilters


def _tags(img) -> list:
    return [short_image_name(n) for n in img.names if "@" not in n]


def summary(eng, img) -> dict:
    cfg = eng.store.config(img)
    users = sum(1 for r in eng.list() if r["Image"] == "sha256:" + img.id)
    return {"Id": "sha256:" + img.id, "ParentId": "", "RepoTags": _tags(img) or ["<none>:<none>"],
            "RepoDigests": [short_image_name(n.rsplit(":", 1)[0]) + "@" + img.manifest
                            for n in img.names if "@" not in n][:1],
            "Created": int(parse_time(img.created)) if img.created else 0,
            "Size": img.size, "VirtualSize": img.size, "SharedSize": -1,
            "Labels": (cfg.get("config") or {}).get("Labels") or {}, "Containers": users}


def _get(eng, ref: str):
    from ...images.errors import ImageError, ImageNotFound

    try:
        return eng.store.get(ref)
    except ImageNotFound:
        raise NotFound(f"No such image: {ref}") from None
    except ImageError as e:
        raise BadRequest(str(e)) from None
    except Exception as e:
        if type(e).__name__ == "InvalidArgument":
            raise BadRequest(str(e)) from None
        raise


def _list(eng, filters: dict, all_: bool) -> list:
    out = []
    for img in eng.store.images():
        s = summary(eng, img)
        ok = True
        for k, vals in filters.items():
            if k == "reference":
                import fnmatch

                ok = any(fnmatch.fnmatch(t, v) or fnmatch.fnmatch(t.rsplit(":", 1)[0], v)
                         for t in s["RepoTags"] for v in vals)
            elif k == "dangling":
                ok = (s["RepoTags"] == ["<none>:<none>"]) == (vals[0] in ("true", "1"))
            elif k == "label":
                ok = labels_match(s["Labels"], vals)
            if not ok:
                break
        if ok:
            out.append(s)
    return out


async def list_images(request):
    eng = daemon(request).engine
    return jresp(await blocking(request, _list, eng, qfilters(request), qbool(request, "all")))


def _inspect(eng, ref: str) -> dict:
    img = _get(eng, ref)
    cfg = eng.store.config(img)
    c = cfg.get("config") or {}
    return {"Id": "sha256:" + img.id, "RepoTags": _tags(img),
            "RepoDigests": [short_image_name(n.rsplit(":", 1)[0]) + "@" + img.manifest
                            for n in img.names if "@" not in n][:1],
            "Parent": cfg.get("parent", ""), "Comment": cfg.get("comment", ""),
            "Created": img.created or "0001-01-01T00:00:00Z",
            "Container": cfg.get("container", ""), "ContainerConfig": cfg.get("container_config") or {},
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": {"Hostname": "", "Domainname": "", "User": c.get("User", ""),
                       "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
                       "ExposedPorts": c.get("ExposedPorts"), "Tty": False, "OpenStdin": False,
                       "StdinOnce": False, "Env": c.get("Env"), "Cmd": c.get("Cmd"),
                       "Healthcheck": c.get("Healthcheck"), "Image": "", "Volumes": c.get("Volumes"),
                       "WorkingDir": c.get("WorkingDir", ""), "Entrypoint": c.get("Entrypoint"),
                       "OnBuild": None, "Labels": c.get("Labels"), "StopSignal": c.get("StopSignal")},
            "Architecture": cfg.get("architecture", "amd64"), "Os": cfg.get("os", "linux"),
            "Size": img.size, "VirtualSize": img.size,
            "GraphDriver": {"Name": "overlay2", "Data": {}},
            "RootFS": {"Type": "layers", "Layers": list(img.layers)},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}}


async def inspect_image(request):
    return jresp(await blocking(request, _inspect, daemon(request).engine, request.match_info["name"]))


async def history(request):
    eng = daemon(request).engine

    def run():
        img = _get(eng, request.match_info["name"])
        cfg = eng.store.config(img)
        out = []
        for h in reversed(cfg.get("history") or []):
            out.append({"Id": "<missing>", "Created": int(parse_time(h.get("created", ""))) if h.get("created") else 0,
                        "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": 0,
                        "Comment": h.get("comment", "")})
        if out:
            out[0]["Id"] = "sha256:" + img.id
            out[0]["Tags"] = _tags(img)
        return out
    return jresp(await blocking(request, run))


async def tag(request):
    eng = daemon(request).engine
    repo = request.query.get("repo", "")
    t = request.query.get("tag", "") or "latest"
    if not repo:
        raise BadRequest("repository name must have at least one component")

    def run():
        img = _get(eng, request.match_info["name"])
        try:
            eng.store.tag(img.id, f"{repo}:{t}")
        except Exception as e:
            if type(e).__name__ == "InvalidArgument":
                raise BadRequest(str(e)) from None
            raise
        eng.events.emit("image", "tag", "sha256:" + img.id, {"name": f"{repo}:{t}"})
    await blocking(request, run)
    return web.Response(status=201)


async def remove(request):
    eng = daemon(request).engine
    force = qbool(request, "force")
    ref = request.match_info["name"]

    def run():
        from ...images.errors import ImageError

        img = _get(eng, ref)
        by_id = ref.startswith("sha256:") or img.id.startswith(ref)
        users = [r for r in eng.list() if r["Image"] == "sha256:" + img.id]
        if users and (by_id or len(img.names) <= 1) and not force:
            c = users[0]
            raise Conflict(f"conflict: unable to remove repository reference \"{ref}\" (must force)"
                           f" - container {c['Id'][:12]} is using its referenced image {img.id[:12]}")
        out = []
        if by_id and len(img.names) > 1 and force:
            for n in img.names[1:]:
                out += eng.store.remove(n)
        try:
            done = eng.store.remove(img.names[0] if by_id and img.names else ref, force=force)
        except ImageError as e:
            raise Conflict(str(e)) from None
        for line in out + done:
            kind, _, what = line.partition(": ")
            out_key = "Untagged" if kind == "Untagged" else "Deleted"
            eng.events.emit("image", "untag" if out_key == "Untagged" else "delete",
                            "sha256:" + img.id, {"name": what})
        return [{"Untagged" if ln.startswith("Untagged") else "Deleted":
                 short_image_name(ln.partition(": ")[2]) if ln.startswith("Untagged")
                 else ln.partition(": ")[2]} for ln in out + done]
    return jresp(await blocking(request, run))


class _Progress:
    """The store's progress interface → Docker's JSON progress messages on a queue."""

    def __init__(self, loop, queue, pushing: bool = False):
        self.loop, self.queue = loop, queue
        self.words = ("Preparing", "Pushing", "Pushed") if pushing else \
            ("Pulling fs layer", "Downloading", "Pull complete")

    def put(self, msg: dict) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, msg)

    def layer(self, digest: str, total: int):
        short = digest.split(":")[-1][:12]
        self.put({"status": self.words[0], "progressDetail": {}, "id": short})
        return _Layer(self, short, total)

    def message(self, text: str) -> None:
        self.put({"status": text})


class _Layer:
    def __init__(self, p, short, total):
        self.p, self.short, self.total, self.n, self.last = p, short, total, 0, 0

    def update(self, n: int) -> None:
        self.n += n
        if self.n - self.last >= 256 * 1024 or self.n == self.total:
            self.last = self.n
            self.p.put({"status": self.p.words[1], "progressDetail": {"current": self.n, "total": self.total},
                        "id": self.short})

    def done(self, note: str = "") -> None:
        self.p.put({"status": "Already exists" if note and "exist" in note else self.p.words[2],
                    "progressDetail": {}, "id": self.short})


async def _stream(request, work, first: list = (), pushing: bool = False):
    """Run work(progress) in the pool, streaming its progress messages; an error ends the
    stream with Docker's errorDetail message (the status is already 200 by then)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    prog = _Progress(loop, queue, pushing)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for m in first:
        await resp.write(json.dumps(m).encode() + b"\r\n")
    fut = loop.run_in_executor(request.app["pool"], work, prog)
    getter = None
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({fut, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await resp.write(json.dumps(getter.result()).encode() + b"\r\n")
                continue
            getter.cancel()
            while not queue.empty():
                await resp.write(json.dumps(queue.get_nowait()).encode() + b"\r\n")
            break
        try:
            for m in fut.result() or []:
                await resp.write(json.dumps(m).encode() + b"\r\n")
        except Exception as e:
            msg = str(e) or type(e).__name__
            await resp.write(json.dumps({"errorDetail": {"message": msg}, "error": msg}).encode() + b"\r\n")
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went: the pull goes on and its image lands (as dockerd)
    finally:
        if getter is not None:
            getter.cancel()
    try:
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


def source_of(image: str, tag: str) -> tuple:
    """fromImage + tag → (source, tls_verify): loopback registries are insecure, as
    dockerd's default insecure-registries 127.0.0.0/8."""
    if "@" not in image and tag:
        last = image.rsplit("/", 1)[-1]
        image = image.rsplit(":", 1)[0] if ":" in last else image
        image = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
    host = image.split("/", 1)[0] if "/" in image else ""
    return "docker://" + image, not insecure_host(host)


def insecure_host(host: str) -> bool:
    return host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]") or host.startswith("127.")


SEARCH_FILTERS = ("is-automated", "is-official", "stars")


async def search(request):
    """GET /images/search?term=&limit=&filters=: the index's v1 search (Docker Hub's, or that
    of the registry the term names), filtered, as dockerd answers it."""
    from ...errors import ContainerError
    from ...images import catalog
    from ..errors import EngineError

    q = request.query
    filters = qfilters(request)
    for k, vals in filters.items():
        if k not in SEARCH_FILTERS:
            raise BadRequest(f"Invalid filter '{k}'")
        for v in vals:
            if k == "stars" and not v.lstrip("-").isdigit() or \
                    k != "stars" and v.lower() not in ("true", "false", "1", "0"):
                raise BadRequest(f"Invalid filter '{k}={v}'")
    limit = 0
    if q.get("limit"):
        try:
            limit = int(q["limit"])
        except ValueError:
            raise EngineError(f'strconv.Atoi: parsing "{q["limit"]}": invalid syntax') from None
    limit = limit or 25
    if not 1 <= limit <= 100:
        raise BadRequest(f"Limit {limit} is outside the range of [1, 100]")
    term = q.get("term", "")
    host, _ = catalog.split_search_term(term)

    def run():
        try:
            return catalog.search_v1(term, limit, tls_verify=not insecure_host(host))
        except Exception as e:
            if type(e).__name__ == "InvalidArgument":
                raise BadRequest(str(e)) from None
            if isinstance(e, ContainerError):
                raise EngineError(str(e)) from None
            raise

    out = []
    for r in await blocking(request, run):
        if any(r["is_automated"] != (v.lower() in ("true", "1")) for v in filters.get("is-automated", [])):
            continue
        if any(r["is_official"] != (v.lower() in ("true", "1")) for v in filters.get("is-official", [])):
            continue
        if any(r["star_count"] < int(v) for v in filters.get("stars", [])):
            continue
        out.append(r)
    return jresp(out)


async def create(request):
    eng = daemon(request).engine
    src = request.query.get("fromSrc")
    if src:
        return await import_image(request, src)
    image = request.query.get("fromImage", "")
    if not image:
        raise BadRequest("fromImage: no image given")
    tag_ = request.query.get("tag", "")
    source, verify = source_of(image, tag_)
    shown = image + (":" + tag_ if tag_ and ":" not in image.rsplit("/", 1)[-1] else "")

    def work(prog):
        from ...images.errors import ImageNotFound

        before = None
        try:
            before = eng.store.get(shown).id
        except Exception:
            pass
        try:
            img = eng.store.pull(source, tls_verify=verify, progress=prog)
        except ImageNotFound as e:
            raise NotFound(f"manifest for {shown} not found: manifest unknown: {e}") from None
        eng.events.emit("image", "pull", shown, {"name": shown})
        new = "Image is up to date" if before == img.id else "Downloaded newer image"
        return [{"status": f"Digest: {img.manifest}"},
                {"status": f"Status: {new} for {shown}"}]

    # a missing image fails before the 200, as dockerd answers 404 for an unknown repository
    return await _stream(request, work, first=[{"status": f"Pulling from {image.split(':')[0]}",
                                                 "id": tag_ or "latest"}])


async def import_image(request, src: str):
    """docker import (POST /images/create?fromSrc=-|URL&repo=&tag=&changes=&message=): the
    request body (or what the URL answers) as the one layer of a new image."""
    from ...images.commit import import_tar
    from ..errors import bad_input

    eng = daemon(request).engine
    q = request.query
    repo, tag_ = q.get("repo", ""), q.get("tag", "")
    name = ""
    if repo:
        last = repo.rsplit("/", 1)[-1]
        name = repo if (":" in last or "@" in repo or not tag_) else f"{repo}:{tag_}"
    if src != "-" and not src.startswith(("http://", "https://")):
        src = "http://" + src  # as dockerd: a bare host/path is fetched over HTTP
    fd, path = tempfile.mkstemp(prefix="import-", suffix=".tar", dir=eng.root)
    try:
        with os.fdopen(fd, "wb") as f:
            if src == "-":
                async for chunk in request.content.iter_chunked(1 << 20):
                    await asyncio.get_running_loop().run_in_executor(request.app["pool"], f.write, chunk)

        def work(prog):
            import io
            import urllib.request

            if src != "-":
                try:
                    with urllib.request.urlopen(src, timeout=60) as r, open(path, "wb") as out:
                        while True:
                            chunk = r.read(1 << 20)
                            if not chunk:
                                break
                            out.write(chunk)
                except OSError as e:
                    raise BadRequest(f"import: {src}: {e}") from None
                prog.put({"status": "Downloading from " + src})
            with bad_input("LexError"), open(path, "rb") as f:
                img = import_tar(eng.store, io.BufferedReader(f), image=name,
                                 changes=[c for c in q.getall("changes", []) if c],
                                 message=q.get("message", ""), source=src)
            eng.events.emit("image", "import", "sha256:" + img.id, {"name": name})
            return [{"status": "sha256:" + img.id}]
        return await _stream(request, work)
    finally:
        os.unlink(path)


async def load(request):
    eng = daemon(request).engine
    quiet = qbool(request, "quiet")
    fd, path = tempfile.mkstemp(prefix="load-", suffix=".tar", dir=eng.root)
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.content.iter_chunked(1 << 20):
                await asyncio.get_running_loop().run_in_executor(request.app["pool"], f.write, chunk)

        def work(prog):
            img = eng.store.pull("docker-archive:" + path, progress=None if quiet else prog)
            tags = _archive_tags(path)
            eng.events.emit("image", "load", "sha256:" + img.id, {"name": tags[0] if tags else ""})
            # as dockerd: the names the archive gives (not others the image already had)
            return [{"stream": f"Loaded image: {t}\n"} for t in tags] or \
                [{"stream": f"Loaded image ID: sha256:{img.id}\n"}]
        return await _stream(request, work)
    finally:
        os.unlink(path)


def _archive_tags(path: str) -> list:
    """The RepoTags of a docker-archive's manifest.json."""
    import tarfile

    try:
        with tarfile.open(path) as t:
            m = t.extractfile("manifest.json")
            entries = json.loads(m.read(16 << 20)) if m else []
    except (KeyError, OSError, ValueError, tarfile.TarError):
        return []
    return [tag for e in entries if isinstance(e, dict) for tag in e.get("RepoTags") or []
            if isinstance(tag, str)]


async def prune(request):
    eng = daemon(request).engine
    filters = qfilters(request)
    dangling_only = (filters.get("dangling") or ["true"])[0] in ("true", "1")

    def run():
        deleted = []
        used = {r["Image"] for r in eng.list()}
        for img in eng.store.images():
            if "sha256:" + img.id in used or (dangling_only and img.names):
                continue
            for n in list(img.names) or ["sha256:" + img.id]:
                for line in eng.store.remove(n, force=True):
                    k, _, v = line.partition(": ")
                    deleted.append({k: v})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": 0}
    return jresp(await blocking(request, run))


def _safe_members(t, dest: str):
    """Members that stay inside `dest`: no absolute or `..` names, no links leading out,
    no devices; owners are not kept (the context is data)."""

    root = os.path.realpath(dest)
    for m in t.getmembers():
        target = os.path.realpath(os.path.join(root, m.name))
        if not (target == root or target.startswith(root + "/")):
            raise BadRequest(f"the build context has a path outside it: {m.name!r}")
        if m.issym() or m.islnk():
            link = m.linkname if m.islnk() or m.linkname.startswith("/") else \
                os.path.join(os.path.dirname(m.name), m.linkname)
            where = os.path.realpath(os.path.join(root, link.lstrip("/") if m.islnk() else link))
            if m.islnk() and not where.startswith(root + "/"):
                raise BadRequest(f"the build context has a link outside it: {m.name!r}")
        if m.isdev():
            continue
        m.uid = m.gid = 0
        m.uname = m.gname = ""
        m.mode &= 0o777
        yield m


async def push(request):
    """docker push: images.push to the registry the name says (loopback ones insecure, as
    pull), streamed progress."""
    eng = daemon(request).engine
    name = request.match_info["name"]
    tag_ = request.query.get("tag", "")
    ref = f"{name}:{tag_}" if tag_ else name
    source, verify = source_of(name, tag_)

    def work(prog):
        from ...images import push as images_push

        img = _get(eng, ref)
        digest = images_push(ref, source, storage=eng.store.root, tls_verify=verify, progress=prog)
        eng.events.emit("image", "push", ref, {"name": ref})
        return [{"status": f"{tag_ or 'latest'}: digest: {digest} size: {img.size}"},
                {"progressDetail": {}, "aux": {"Tag": tag_ or "latest", "Digest": digest, "Size": img.size}}]
    return await _stream(request, work, first=[{"status": f"The push refers to repository [{name}]"}],
                         pushing=True)


async def save(request):
    """docker save: images.save's docker-archive, streamed back."""
    eng = daemon(request).engine
    names = request.query.getall("names", []) if "name" not in request.match_info else \
        [request.match_info["name"]]
    if not names:
        raise BadRequest("names: no image given")
    for n in names:
        await blocking(request, _get, eng, n)
    fd, path = tempfile.mkstemp(prefix="save-", suffix=".tar", dir=eng.root)
    os.close(fd)
    try:
        from ...images import save as images_save

        await blocking(request, images_save, names, path, eng.store.root)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        with open(path, "rb") as f:
            while True:
                chunk = await blocking(request, f.read, 1 << 20)
                if not chunk:
                    break
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        os.unlink(path)


async def build(request):
    """A tar context (gzip allowed) → images.build, its steps and output streamed as
    {"stream": …}, the image id as {"aux": {"ID": …}} (docker-compose reads either)."""
    import shutil
    import tarfile

    eng = daemon(request).engine
    q = request.query
    if q.get("remote"):
        raise BadRequest("remote build contexts are not supported")
    try:
        build_args = json.loads(q.get("buildargs") or "{}")
    except ValueError:
        raise BadRequest("buildargs: not JSON") from None
    tags = q.getall("t", [])
    work = tempfile.mkdtemp(prefix="build-", dir=eng.root)
    ctx = os.path.join(work, "context")
    try:
        tar_path = os.path.join(work, "context.tar")
        with open(tar_path, "wb") as f:
            async for chunk in request.content.iter_chunked(1 << 20):
                f.write(chunk)

        def unpack():
            os.mkdir(ctx)
            try:
                with tarfile.open(tar_path, "r:*") as t:
                    if hasattr(tarfile, "data_filter"):
                        t.extractall(ctx, filter="data")
                    else:  # Python < 3.11.4: the same refusals by hand
                        t.extractall(ctx, members=_safe_members(t, ctx))
            except (tarfile.TarError, OSError) as e:
                raise BadRequest(f"the build context is not a tar archive: {e}") from None
        await blocking(request, unpack)

        def work_fn(prog):
            from ...images import build as images_build

            def progress(ev):
                kind = ev.get("event")
                if kind == "step":
                    prog.put({"stream": f"Step {ev.get('step')}/{ev.get('total')} : {ev.get('instruction', '')}\n"})
                elif kind == "cached":
                    prog.put({"stream": " ---> Using cache\n"})
                elif kind == "output":
                    prog.put({"stream": ev["data"].decode("utf-8", "replace")})
                elif kind == "warning":
                    prog.put({"stream": f"[WARNING]: {ev.get('message', '')}\n"})
            df = q.get("dockerfile") or None
            try:
                img = images_build(ctx, dockerfile=os.path.join(ctx, df) if df else None,
                                   tag=tags[0] if tags else "", build_args=build_args,
                                   target=q.get("target", ""), no_cache=qbool(request, "nocache"),
                                   network="host" if q.get("networkmode") == "host" else "none",
                                   storage=eng.store.root, progress=progress)
            except Exception as e:
                if type(e).__name__ == "BuildError":
                    if getattr(e, "code", None) is not None:
                        # dockerd's words for a RUN that failed (clients match them)
                        raise BadRequest(f"The command '{' '.join(e.argv)}' returned a non-zero "
                                         f"code: {e.code}") from None
                    raise BadRequest(str(e)) from None
                raise
            for t in tags[1:]:
                eng.store.tag(img.id, t)
            out = [{"aux": {"ID": "sha256:" + img.id}},
                   {"stream": f"Successfully built {img.id[:12]}\n"}]
            out += [{"stream": f"Successfully tagged {t if ':' in t.rsplit('/', 1)[-1] else t + ':latest'}\n"}
                    for t in tags]
            eng.events.emit("image", "build", "sha256:" + img.id, {"name": tags[0] if tags else ""})
            return out
        return await _stream(request, work_fn)
    finally:
        await blocking(request, shutil.rmtree, work, True)


async def commit(request):
    """POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=…, the body a
    container config (or nothing: the container's)."""
    from .. import commit as commits

    d = daemon(request)
    body = await body_json(request, None)
    if isinstance(body, dict) and not any(k for k in body if k not in ("HostConfig", "NetworkingConfig")):
        body = None  # dockerd: no config fields, no config (the container's is used)
    ref = request.query.get("container", "")
    if not ref:
        raise NotFound("No such container: ")
    q = request.query
    iid = await blocking(request, commits.commit, d.engine, ref, repo=q.get("repo", ""),
                         tag=q.get("tag", ""), comment=q.get("comment", ""),
                         author=q.get("author", ""), pause=qbool(request, "pause", True),
                         changes=q.getall("changes", []), config=body)
    return jresp({"Id": iid}, 201)


ROUTES = [("POST", "/commit", commit), ("GET", "/images/search", search), ("POST", "/build", build), ("GET", "/images/json", list_images), ("POST", "/images/create", create),
          ("POST", "/images/load", load), ("POST", "/images/prune", prune),
          ("GET", "/images/{name:.+}/json", inspect_image),
          ("GET", "/images/{name:.+}/history", history),
          ("POST", "/images/{name:.+}/tag", tag), ("DELETE", "/images/{name:.+}", remove),
          ("POST", "/images/{name:.+}/push", push), ("GET", "/images/get", save),
          ("GET", "/images/{name:.+}/get", save)]
