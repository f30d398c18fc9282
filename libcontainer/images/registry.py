"""The Docker Registry HTTP API v2 client: manifests and blobs over http.client, with the
registries' auth dance (a 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
sends us to the token server, with the user's credentials if given; `Basic` takes them
directly) and `--tls-verify=false` (any certificate, then plain HTTP, as skopeo does)."""
from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import urllib.parse

from .errors import ImageError, ImageNotFound, RegistryError
from .manifest import ACCEPT, MAX_MANIFEST, Descriptor
from .reference import Reference
from .source import Source

TIMEOUT = 60
_REDIRECTS = (301, 302, 303, 307, 308)
_BLOCK = 1 << 20  # bytes per send() of a request body (http.client's default is 8 KiB)


def parse_challenge(header: str) -> tuple:
    """`Bearer realm="…",service="…"` → ("bearer", {realm:…, service:…})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,").lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1:end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        i += 1
    return scheme.lower(), params


def _error_detail(body: bytes) -> str:
    """The codes and messages of a registry's JSON error body ("" when it has none)."""
    try:
        errs = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errs)
    except (ValueError, AttributeError):
        return ""


class RegistrySource(Source):
    def __init__(self, ref: Reference, tls_verify: bool = True, creds: str = "",
                 actions: str = "pull"):
        self.ref = ref
        host = "registry-1.docker.io" if ref.registry == "docker.io" else ref.registry
        self.host = host
        self.tls_verify = tls_verify
        self.scheme = "https"
        if not creds:  # what `runner login` (or podman, skopeo, docker login) stored
            from .auth import lookup

            creds = lookup(ref.registry, ref.repository)
        self.creds = creds
        self.actions = actions  # what a token is asked for: pull, or pull,push
        self.extra_scopes: list = []  # e.g. the source repository of a blob mount
        self.auth = ""
        self._local = threading.local()  # layers are fetched in parallel: a connection each
        self._all: list = []
        self.where = str(ref)

    @property
    def conn(self):
        return getattr(self._local, "conn", None)

    @conn.setter
    def conn(self, value) -> None:
        self._local.conn = value
        if value is not None:
            self._all.append(value)

    # ---- transport -----------------------------------------------------------------------

    def _connect(self, scheme: str, netloc: str):
        if scheme == "https":
            ctx = ssl.create_default_context()
            if not self.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=ctx, blocksize=_BLOCK)
        return http.client.HTTPConnection(netloc, timeout=TIMEOUT, blocksize=_BLOCK)

    def _send(self, method: str, path: str, headers: dict, body=None):
        """One request on the registry's own connection, switching to plain HTTP once when
        TLS is not verified and the registry does not speak it."""
        for attempt in range(3):
            if self.conn is None:
                self.conn = self._connect(self.scheme, self.host)
            try:
                if hasattr(body, "seek"):
                    body.seek(0)
                self.conn.request(method, path, body=body, headers=headers)
                return self.conn.getresponse()
            except (ssl.SSLError, ConnectionResetError) as e:
                # another thread may have switched to plain HTTP already: it is this
                # connection's scheme that failed
                was_tls = isinstance(self.conn, http.client.HTTPSConnection)
                self._reset()
                if was_tls and not self.tls_verify:
                    self.scheme = "http"
                    continue
                raise RegistryError(f"{self.where}: TLS with {self.host} failed: {e} "
                                    "(--tls-verify=false for a plain-HTTP registry)") from None
            except (http.client.RemoteDisconnected, BrokenPipeError):
                self._reset()  # a kept-alive connection the server closed: once more
                if attempt:
                    raise RegistryError(f"{self.where}: {self.host} closed the connection") from None
            except (OSError, http.client.HTTPException) as e:
                was_tls = isinstance(self.conn, http.client.HTTPSConnection)
                self._reset()
                if was_tls and not self.tls_verify and isinstance(e, ConnectionRefusedError):
                    self.scheme = "http"
                    continue
                msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
                raise RegistryError(f"{self.where}: cannot reach {self.host}: {msg}") from None
        raise RegistryError(f"{self.where}: cannot reach {self.host}")

    def _reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _get(self, path: str, accept: str = ""):
        """GET with auth (one 401 answered) and redirects (to another host without our
        Authorization); → a response with status 200, else RegistryError."""
        headers = {"User-Agent": "runner/0.1"}
        if accept:
            headers["Accept"] = accept
        for attempt in range(2):
            if self.auth:
                headers["Authorization"] = self.auth
            resp = self._send("GET", path, headers)
            if resp.status != 401 or attempt:
                break
            # the first 401 (or one for a new scope): the challenge says how to log in
            challenge = resp.getheader("WWW-Authenticate", "")
            resp.read()
            self._authenticate(challenge)
        if resp.status in _REDIRECTS:
            location = resp.getheader("Location", "")
            resp.read()
            return self._follow(urllib.parse.urljoin(f"{self.scheme}://{self.host}{path}", location))
        if resp.status != 200:
            body = resp.read(64 << 10)
            raise self._error(resp.status, path, body)
        return resp

    def _follow(self, url: str, hops: int = 5):
        for _ in range(hops):
            u = urllib.parse.urlsplit(url)
            conn = self._connect(u.scheme, u.netloc)
            headers = {"User-Agent": "runner/0.1"}
            if u.netloc == self.host and self.auth:
                headers["Authorization"] = self.auth
            try:
                conn.request("GET", u.path + (f"?{u.query}" if u.query else ""), headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise RegistryError(f"{self.where}: cannot fetch {url}: {e}") from None
            if resp.status in _REDIRECTS:
                url = urllib.parse.urljoin(url, resp.getheader("Location", ""))
                resp.read()
                continue
            if resp.status != 200:
                raise self._error(resp.status, url, resp.read(64 << 10))
            return resp
        raise RegistryError(f"{self.where}: too many redirects")

    def _error(self, status: int, path: str, body: bytes) -> RegistryError:
        detail = _error_detail(body)
        what = f"{self.where}: {path.rsplit('/', 2)[-2]} {path.rsplit('/', 1)[-1]}"
        if status == 401:
            hint = " (credentials rejected)" if self.creds else " (authentication required: --creds USER:PASSWORD)"
            return RegistryError(f"{what}: 401 unauthorized{hint}{': ' + detail if detail else ''}", 401)
        if status == 404:
            return _NotFound(f"{what}: 404 not found{': ' + detail if detail else ''}", 404)
        return RegistryError(f"{what}: HTTP {status}{': ' + detail if detail else ''}", status)

    def _authenticate(self, challenge: str) -> None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not self.creds:
                raise RegistryError(f"{self.where}: 401 unauthorized (authentication required: "
                                    "--creds USER:PASSWORD)", 401)
            self.auth = "Basic " + base64.b64encode(self.creds.encode()).decode()
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{self.where}: 401 unauthorized, with a challenge this client "
                                f"does not know: {challenge!r}", 401)
        scopes = [f"repository:{self.ref.repository}:{self.actions}"] + self.extra_scopes
        for sc in (params.get("scope") or "").split(" "):
            # what the registry asks for beyond ours (the catalog, another repository)
            if sc and sc not in scopes and not sc.startswith(f"repository:{self.ref.repository}:"):
                scopes.append(sc)
        if not self.ref.repository:
            scopes = (params.get("scope") or "").split(" ")
        query = [("service", params.get("service", ""))] + [("scope", sc) for sc in scopes if sc]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https"):
            raise RegistryError(f"{self.where}: token realm {params['realm']!r} is not http(s)")
        conn = self._connect(u.scheme, u.netloc)
        headers = {"User-Agent": "runner/0.1"}
        if self.creds:
            headers["Authorization"] = "Basic " + base64.b64encode(self.creds.encode()).decode()
        try:
            conn.request("GET", u.path + "?" + u.query, headers=headers)
            resp = conn.getresponse()
            body = resp.read(1 << 20)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"{self.where}: token server {u.netloc}: {e}") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise RegistryError(f"{self.where}: the token server answered {resp.status}"
                                + (" (credentials rejected)" if resp.status == 401 else ""), resp.status)
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.where}: the token server's answer has no token")
        self.auth = "Bearer " + token

    def request(self, method: str, path: str, headers: dict | None = None, body=None):
        """Any request, with auth (one 401 answered with a new token); → the response, its
        body unread. `body`: bytes or a file it can seek to its start for a second try."""
        headers = dict(headers or {})
        headers.setdefault("User-Agent", "runner/0.1")
        for attempt in range(2):
            if self.auth:
                headers["Authorization"] = self.auth
            resp = self._send(method, path, headers, body)
            if resp.status != 401 or attempt:
                return resp
            challenge = resp.getheader("WWW-Authenticate", "")
            resp.read()
            self._authenticate(challenge)
        return resp

    def error(self, resp, what: str) -> RegistryError:
        """The registry's refusal, with the codes and messages of its error body."""
        body = resp.read(64 << 10)
        detail = _error_detail(body)
        status = resp.status
        hint = ""
        if status == 401:
            hint = " (credentials rejected)" if self.creds else " (authentication required: --creds USER:PASSWORD or runner login)"
        return RegistryError(f"{self.where}: {what}: HTTP {status}{hint}{': ' + detail if detail else ''}", status)

    # ---- Source --------------------------------------------------------------------------

    def _manifest(self, reference: str) -> tuple:
        resp = self._get(f"/v2/{self.ref.repository}/manifests/{reference}", accept=ACCEPT)
        data = resp.read(MAX_MANIFEST + 1)
        if len(data) > MAX_MANIFEST:
            self._reset()
            raise ImageError(f"{self.where}: manifest larger than {MAX_MANIFEST} bytes")
        mt = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        return data, mt, resp.getheader("Docker-Content-Digest") or ""

    def top(self) -> tuple:
        data, mt, header_digest = self._manifest(self.ref.digest or self.ref.tag)
        # by digest: that digest; by tag: the one the registry says, when it says one
        return data, mt, self.ref.digest or header_digest

    def manifest_blob(self, desc: Descriptor) -> tuple:
        data, mt, _ = self._manifest(desc.digest)
        return data, mt or desc.media_type

    def open_blob(self, desc: Descriptor):
        return _Body(self._get(f"/v2/{self.ref.repository}/blobs/{desc.digest}"), self)

    def close(self) -> None:
        self._reset()
        for conn in self._all:
            conn.close()


class _NotFound(RegistryError, ImageNotFound):
    pass


class _Body:
    """A blob's response as a file; reading past its end is how the store finds a short one."""

    def __init__(self, resp, src: RegistrySource):
        self.resp, self.src = resp, src

    def read(self, n: int = -1) -> bytes:
        try:
            return self.resp.read(n) if n >= 0 else self.resp.read()
        except http.client.IncompleteRead as e:
            self.src._reset()
            return e.partial
        except (OSError, socket.timeout, http.client.HTTPException) as e:
            self.src._reset()
            raise RegistryError(f"{self.src.where}: reading a blob failed: {e}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.resp.isclosed():
            self.src._reset()  # not read to its end: the connection cannot be reused
