"""`push`: an image of the store to a registry (Registry HTTP API v2), an OCI layout, or an
archive. To a registry, per layer: a blob the registry already has is not sent (HEAD); one
it has in another repository is mounted from there (POST ?mount=&from=); else the layer is
made again from the store (tarsplit), compressed, checked against its diff id, and uploaded
in one PUT (monolithic) or in PATCH chunks then a PUT (chunked, for large blobs). Then the
config, then the manifest. Layers go in parallel, each on its own connection.

An upload session is recorded in `DIR/uploads/` (the file flock'ed by its owner) while it is
open: an interrupted push (SIGINT, SIGTERM) cancels its sessions with DELETE before it
exits; sessions of a push that was killed are cancelled by the next push to that registry
(or `runner system prune`). The compressed blobs are made under tmp/, which the store reaps."""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import urllib.parse

from . import export
from .errors import ImageError, InvalidArgument, RegistryError
from .manifest import DOCKER_MANIFEST, load_json, sha256
from .progress import Quiet, _size
from .reference import Reference, parse

# bytes: a larger blob goes in PATCH chunks of this size. It bounds how long an interrupted
# push takes to stop (it ends the request in flight, then cancels the session)
CHUNK = 16 << 20
PARALLEL = 3


def default_format(store, img) -> str:
    """The format the image came in (as skopeo keeps it), else OCI."""
    try:
        m = load_json(store.read_blob(img.manifest), "manifest")
        return "v2s2" if m.get("mediaType") == DOCKER_MANIFEST else "oci"
    except (OSError, ImageError):
        return "oci"


def push(store, image: str, dest: str, tls_verify: bool = True, creds: str = "",
         fmt: str = "", compression: str = "gzip", progress=None, chunk_size: int = CHUNK) -> str:
    """Push `image` (a name or id in the store) to `dest`; → the manifest digest ("" for a
    docker-archive, which has none)."""
    from . import archive

    progress = progress or Quiet()
    ref = parse(dest)
    with store.shared():  # no rmi/gc takes its layers away meanwhile
        img = store.get(image)
        fmt = fmt or ("oci" if compression == "zstd" else default_format(store, img))
        export.check_format(fmt, compression)
        if ref.transport == "docker":
            if ref.digest:
                raise InvalidArgument(f"destination {dest!r}: a push needs a tag, not a digest")
            return _RegistryPush(store, img, ref, tls_verify, creds, fmt, compression, progress,
                                 chunk_size).run()
        if ref.transport == "oci":
            return archive.write_oci_layout(store, img.id, ref.path, ref.tag, progress, compression)
        if ref.transport == "oci-archive":
            archive.write_oci_archive(store, [(img.id, ref.tag)], ref.path, progress, compression)
            return ""
        names = [ref.tag] if ref.tag else img.names
        archive.write_docker_archive(store, [(img.id, names)], ref.path, progress)
        return ""


class _Journal:
    """Upload sessions this push has open, in a file it holds locked. Made as `.mk-*`,
    locked, then renamed (no other push sees it unlocked); each state is written whole at
    the start of the file, one JSON line, before the file is cut to it, so a push killed
    at any instant leaves a first line that is a whole state."""

    def __init__(self, store, ref: Reference, tls_verify: bool):
        import tempfile

        self.dir = store.path("uploads")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd, made = tempfile.mkstemp(prefix=".mk-", suffix=".json", dir=self.dir)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd = fd
        self.path = os.path.join(self.dir, "push-" + os.path.basename(made)[4:])
        self.info = {"registry": ref.registry, "repository": ref.repository,
                     "tls_verify": tls_verify, "urls": []}
        self.lock = threading.Lock()
        self._write()
        os.rename(made, self.path)

    def _write(self) -> None:
        data = json.dumps(self.info).encode() + b"\n"
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))
        os.fsync(self.fd)

    def add(self, url: str) -> None:
        self.replace(None, url)

    def remove(self, url: str) -> None:
        self.replace(url, None)

    def replace(self, old, new) -> None:
        with self.lock:
            urls = [u for u in self.info["urls"] if u != old] + ([new] if new else [])
            if urls != self.info["urls"]:
                self.info["urls"] = urls
                self._write()

    def close(self) -> None:
        os.unlink(self.path)
        os.close(self.fd)


def stale_journals(store) -> list:
    """(path, info) of upload journals whose push is gone."""
    d = store.path("uploads")
    out = []
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        p = os.path.join(d, n)
        if not n.startswith("push-"):
            try:  # a journal its push never renamed: killed in its first instant
                if n.startswith(".mk-") and time.time() - os.lstat(p).st_mtime > 600:
                    os.unlink(p)
            except OSError:
                pass
            continue
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            info = json.loads(os.read(fd, 1 << 20).split(b"\n", 1)[0] or b"{}")
        except ValueError:
            info = {}
        os.close(fd)
        out.append((p, info if isinstance(info, dict) else {}))
    return out


def cancel_stale_uploads(store, registry: str = "", src=None) -> list:
    """DELETE the upload sessions of pushes that were killed (those to `registry`, or all);
    → the URLs cancelled. A journal whose registry cannot be reached is kept for later."""
    from .registry import RegistrySource

    done = []
    for path, info in stale_journals(store):
        reg = info.get("registry", "")
        urls = [u for u in info.get("urls") or [] if isinstance(u, str)]
        if registry and reg != registry and urls:
            continue  # its registry's own next push (or system prune) cancels them
        client = src
        try:
            if urls and client is None:
                client = RegistrySource(Reference("docker", registry=reg,
                                                  repository=info.get("repository", "")),
                                        tls_verify=bool(info.get("tls_verify", True)),
                                        actions="pull,push")
            for url in urls:
                _delete_session(client, url)
                done.append(url)
        except RegistryError:
            continue
        finally:
            if client is not None and client is not src:
                client.close()
        os.unlink(path)
    return done


def _path_of(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    return u.path + (f"?{u.query}" if u.query else "")


def _delete_session(client, url: str) -> None:
    resp = client.request("DELETE", _path_of(url))
    resp.read()
    # 204 cancelled; 404 already gone (finished, or purged by the registry)
    if resp.status not in (200, 202, 204, 404):
        raise RegistryError(f"cancelling the upload {url}: HTTP {resp.status}", resp.status)


class _Part:
    """`size` bytes of a file from `offset`, as a request body: counted for the progress
    line, stopped when another layer failed or the push is interrupted."""

    def __init__(self, path: str, offset: int, size: int, line, stop):
        self.f = open(path, "rb")
        self.offset, self.size, self.line, self.stop = offset, size, line, stop
        self.seek(0)

    def seek(self, pos: int) -> None:
        self.f.seek(self.offset + pos)
        self.left = self.size - pos

    def read(self, n: int = -1) -> bytes:
        # not stopped mid-request: the registry would keep the bytes already sent, and the
        # session's state token (which only it can make) would no longer match them, so
        # the session could not be cancelled; a push stops between requests
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        self.line.update(len(data))
        return data

    def close(self) -> None:
        self.f.close()


class _RegistryPush:
    def __init__(self, store, img, ref: Reference, tls_verify: bool, creds: str, fmt: str,
                 compression: str, progress, chunk_size: int):
        from .registry import RegistrySource

        self.store, self.img, self.ref = store, img, ref
        self.fmt, self.compression, self.progress = fmt, compression, progress
        self.chunk = max(int(chunk_size), 1 << 16)
        self.src = RegistrySource(ref, tls_verify=tls_verify, creds=creds, actions="pull,push")
        self.repo = ref.repository
        self.here = f"{ref.registry}/{ref.repository}"
        self.tls_verify = tls_verify
        self.stop = threading.Event()

    def run(self) -> str:
        p = export.parts(self.store, self.img.id)
        self._ping()
        cancel_stale_uploads(self.store, self.ref.registry, self.src)
        self.journal = _Journal(self.store, self.ref, self.tls_verify)
        try:
            with self.store.tempdir("push-") as tmp:
                self.tmp = tmp.path
                layers = self._layers(p)
            cfg = p.config_blob(self.fmt)
            if not self._exists(cfg.digest):
                self._upload_bytes(p.config, cfg.digest, Quiet())
            manifest = export.manifest(cfg, layers, self.fmt)
            mt = json.loads(manifest)["mediaType"]
            resp = self.src.request("PUT", f"/v2/{self.repo}/manifests/{self.ref.tag}",
                                    {"Content-Type": mt, "Content-Length": str(len(manifest))},
                                    manifest)
            if resp.status not in (200, 201):
                raise self.src.error(resp, f"manifest {self.ref.tag}")
            resp.read()
            self.progress.message(f"Writing manifest {sha256(manifest)} to {self.ref}")
            return sha256(manifest)
        finally:
            self.journal.close()
            self.src.close()

    # ---- layers --------------------------------------------------------------------------

    def _layers(self, p) -> list:
        jobs = [(diff_id, layer_dir, self.progress.layer(diff_id, self.store.layer_size(diff_id)))
                for diff_id, layer_dir in p.layers]
        from concurrent.futures import ThreadPoolExecutor, wait

        # even one layer goes to a worker: an interrupt (in the main thread) then sets
        # `stop`, and the worker ends its request and cancels its session

        with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(jobs)))) as pool:
            futures = [pool.submit(self._layer, *j) for j in jobs]
            try:
                wait(futures, return_when="FIRST_EXCEPTION")
            finally:
                if any(f.done() and f.exception() for f in futures) or \
                        not all(f.done() for f in futures):
                    self.stop.set()
                    for f in futures:
                        f.cancel()
        for f in futures:
            if not f.cancelled() and f.exception() and not isinstance(f.exception(), export.Stopped):
                raise f.exception()
        for f in futures:
            if f.cancelled() or f.exception():
                raise ImageError(f"{self.ref}: push stopped")
        return [f.result() for f in futures]

    def _layer(self, diff_id: str, layer_dir: str, line) -> export.Blob:
        mt = export.LAYER_TYPES[(self.fmt, self.compression)]
        known = [b for b in export.known_blobs(layer_dir)
                 if b.get("compression") == self.compression and isinstance(b.get("digest"), str)]
        for b in known:
            if self._exists(b["digest"]):
                export.remember_blob(layer_dir, b["digest"], b["size"], self.compression, self.here)
                line.done("already exists")
                return export.Blob(b["digest"], int(b["size"]), mt)
        session = None
        for b in known:
            for other in b.get("repos") or []:
                host, _, repo = other.partition("/")
                if host != self.ref.registry or repo == self.repo or not repo:
                    continue
                mounted, session = self._mount(b["digest"], repo, session)
                if mounted:
                    export.remember_blob(layer_dir, b["digest"], b["size"], self.compression, self.here)
                    line.done(f"mounted from {repo}")
                    return export.Blob(b["digest"], int(b["size"]), mt)
        path = os.path.join(self.tmp, diff_id[7:])
        blob = export.write_layer(layer_dir, diff_id, self.compression, path, line, self.stop)
        blob.media_type = mt
        export.remember_blob(layer_dir, blob.digest, blob.size, self.compression)
        if self._exists(blob.digest):
            self._cancel(session)
            line.done("already exists")
        else:
            line.seen, line.total = 0, blob.size  # now the upload of the compressed blob
            self._upload_file(path, blob, line, session)
            line.done(f"{_size(blob.size)} pushed")
        export.remember_blob(layer_dir, blob.digest, blob.size, self.compression, self.here)
        os.unlink(path)
        return blob

    # ---- the protocol ----------------------------------------------------------------------

    def _ping(self) -> None:
        """GET /v2/ once before the layers' threads start, as docker does: the scheme (with
        --tls-verify=false, TLS or plain HTTP) is found once, not by each connection."""
        resp = self.src.request("GET", "/v2/")
        resp.read()
        if resp.status not in (200, 401):
            raise self.src.error(resp, "/v2/")

    def _exists(self, digest: str) -> bool:
        resp = self.src.request("HEAD", f"/v2/{self.repo}/blobs/{digest}")
        resp.read()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise self.src.error(resp, f"blob {digest}")

    def _start(self) -> str:
        resp = self.src.request("POST", f"/v2/{self.repo}/blobs/uploads/", {"Content-Length": "0"})
        if resp.status != 202:
            raise self.src.error(resp, "starting an upload")
        resp.read()
        return self._location(resp)

    def _location(self, resp) -> str:
        loc = resp.getheader("Location")
        if not loc:
            raise RegistryError(f"{self.ref}: the registry gave no Location for the upload")
        url = urllib.parse.urljoin(f"{self.src.scheme}://{self.src.host}/", loc)
        return url

    def _mount(self, digest: str, from_repo: str, session):
        """→ (mounted?, an upload session the registry opened instead, to be used or closed)."""
        if session is not None:
            self._cancel(session)
        self.src.extra_scopes = [f"repository:{from_repo}:pull"]
        q = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        resp = self.src.request("POST", f"/v2/{self.repo}/blobs/uploads/?{q}", {"Content-Length": "0"})
        resp.read()
        if resp.status == 201:
            return True, None
        if resp.status == 202:  # not mountable: the registry opened an ordinary upload
            url = self._location(resp)
            self.journal.add(url)
            return False, url
        raise self.src.error(resp, f"mounting blob {digest} from {from_repo}")

    def _cancel(self, url) -> None:
        if url is None:
            return
        try:
            self.src._reset()  # the interrupted request may have left the connection mid-body
            _delete_session(self.src, url)
        except (RegistryError, OSError):
            return  # kept in the journal: the next push cancels it
        self.journal.remove(url)

    def _finish(self, url: str, digest: str, body, size: int):
        sep = "&" if "?" in url else "?"
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        resp = self.src.request("PUT", _path_of(url) + sep + urllib.parse.urlencode({"digest": digest}),
                                headers, body if size else b"")
        if resp.status not in (201, 204):
            raise self.src.error(resp, f"blob {digest}")
        resp.read()

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise export.Stopped("push stopped")

    def _upload_bytes(self, data: bytes, digest: str, line) -> None:
        import io

        url = self._start()
        self.journal.add(url)
        try:
            self._finish(url, digest, io.BytesIO(data), len(data))
        except BaseException:
            self._cancel(url)
            raise
        self.journal.remove(url)

    def _upload_file(self, path: str, blob: export.Blob, line, session=None) -> None:
        url = session or self._start()
        if session is None:
            self.journal.add(url)
        first = url
        try:
            self._check_stop()
            if blob.size <= self.chunk:  # monolithic: one PUT with the whole blob
                part = _Part(path, 0, blob.size, line, self.stop)
                try:
                    self._finish(url, blob.digest, part, blob.size)
                finally:
                    part.close()
            else:  # chunked: PATCH each range, then a PUT that closes the session
                offset = 0
                while offset < blob.size:
                    self._check_stop()
                    n = min(self.chunk, blob.size - offset)
                    part = _Part(path, offset, n, line, self.stop)
                    try:
                        resp = self.src.request("PATCH", _path_of(url), {
                            "Content-Type": "application/octet-stream", "Content-Length": str(n),
                            "Content-Range": f"{offset}-{offset + n - 1}"}, part)
                    finally:
                        part.close()
                    if resp.status != 202:
                        raise self.src.error(resp, f"blob {blob.digest} chunk at {offset}")
                    resp.read()
                    new = self._location(resp)
                    if new != url:
                        self.journal.replace(url, new)
                        url = new
                    offset += n
                self._finish(url, blob.digest, b"", 0)
        except BaseException:
            self._cancel(url)
            raise
        self.journal.remove(url)
        if first != url:
            self.journal.remove(first)
