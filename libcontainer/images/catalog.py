"""`search`: a registry's repositories (`GET /v2/_catalog`) filtered by a term, and a
repository's tags (`GET /v2/NAME/tags/list`), following `Link: <…>; rel="next"` pages as the
distribution spec says (with `n` per page), up to a limit. `search_v1`: what `docker search`
asks (dockerd's registry client): the v1 search API of Docker Hub's index or of the registry
the term names (`GET /v1/search?q=&n=`), which distribution's v2 registries do not serve."""
from __future__ import annotations

import json
import re
import urllib.parse

from .errors import ImageError, InvalidArgument
from .reference import Reference, _HOST_RE, _NAME_RE

PAGE = 100
_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _client(registry: str, repository: str, tls_verify: bool, creds: str):
    from .registry import RegistrySource

    src = RegistrySource(Reference("docker", registry=registry, repository=repository),
                         tls_verify=tls_verify, creds=creds)
    src.where = f"{registry}/{repository}" if repository else registry
    return src


def _pages(src, path: str, key: str, limit: int) -> list:
    out: list = []
    url = f"{path}?{urllib.parse.urlencode({'n': min(PAGE, limit) if limit else PAGE})}"
    seen = set()
    while url and (not limit or len(out) < limit):
        if url in seen:  # a registry whose next page is this page
            break
        seen.add(url)
        resp = src.request("GET", url, {"Accept": "application/json"})
        if resp.status != 200:
            raise src.error(resp, path.rsplit("/", 1)[-1])
        body = resp.read(16 << 20)
        try:
            items = json.loads(body).get(key)
        except (ValueError, AttributeError):
            raise ImageError(f"{src.where}: {path}: the answer is not JSON with {key!r}") from None
        if not isinstance(items, list):
            items = []  # distribution answers {"tags": null} for a repository with none
        out += [i for i in items if isinstance(i, str)]
        m = _LINK_RE.search(resp.getheader("Link") or "")
        url = ""
        if m:
            u = urllib.parse.urlsplit(urllib.parse.urljoin(path, m.group(1)))
            url = u.path + (f"?{u.query}" if u.query else "")
    return out[:limit] if limit else out


def split_host(arg: str, what: str) -> tuple:
    host, sep, rest = arg.partition("/")
    if not sep and not ("." in host or ":" in host or host == "localhost"):
        raise InvalidArgument(f"{what} {arg!r}: name the registry: HOST[:PORT]/…")
    if not _HOST_RE.match(host):
        raise InvalidArgument(f"{what} {arg!r}: invalid registry {host!r}")
    return host, rest


def search(term: str, tls_verify: bool = True, creds: str = "", limit: int = 0) -> list:
    """HOST/TERM (or HOST/): the repositories whose name contains TERM; → ["HOST/NAME", …]."""
    host, text = split_host(term, "search term")
    src = _client(host, "", tls_verify, creds)
    try:
        repos = _pages(src, "/v2/_catalog", "repositories", 0)
    finally:
        src.close()
    hits = [f"{host}/{r}" for r in repos if text.lower() in r.lower()]
    return hits[:limit] if limit else hits


def list_tags(repo: str, tls_verify: bool = True, creds: str = "", limit: int = 0) -> list:
    """HOST/NAME: its tags, in the registry's order."""
    host, name = split_host(repo, "repository")
    name = name.partition(":")[0]
    if not name or not _NAME_RE.match(name):
        raise InvalidArgument(f"repository {repo!r}: invalid repository name {name!r}")
    src = _client(host, name, tls_verify, creds)
    try:
        return _pages(src, f"/v2/{name}/tags/list", "tags", limit)
    finally:
        src.close()


def verify(registry: str, creds: str, tls_verify: bool = True) -> None:
    """Log in to the registry's /v2/ with these credentials (basic, or a token for them);
    a RegistryError when they are refused."""
    src = _client(registry, "", tls_verify, creds)
    try:
        resp = src.request("GET", "/v2/")
        if resp.status != 200:
            raise src.error(resp, "login")
        resp.read()
    finally:
        src.close()


INDEX = "index.docker.io"


def split_search_term(term: str) -> tuple:
    """dockerd's splitReposSearchTerm: (index host, the name searched); Docker Hub's index
    unless the first part looks like a host (a dot, a colon, localhost)."""
    first, sep, rest = term.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        return INDEX, term
    return first, rest


def search_v1(term: str, limit: int = 25, tls_verify: bool = True, creds: str = "") -> list:
    """[{"name", "description", "star_count", "is_official", "is_automated"}] from the
    index's v1 search; errors worded as dockerd's (an ImageError)."""
    if "://" in term:
        raise InvalidArgument(f"invalid repository name ({term}): repository name must not contain a scheme")
    host, name = split_search_term(term)
    if host == INDEX and name.startswith("library/"):
        name = name[len("library/"):]
    query = urllib.parse.urlencode({"q": name, "n": limit})
    src = _client(host, "", tls_verify, creds)
    try:
        if host != INDEX:
            # dockerd first checks the endpoint is a registry: any answer to /v1/_ping will do
            try:
                src.request("GET", "/v1/_ping").read(64 << 10)
            except ImageError as e:
                raise ImageError(f'invalid registry endpoint "{src.scheme}://{host}/v1/": {e}') from None
        try:
            resp = src.request("GET", f"/v1/search?{query}", {"Accept": "application/json"})
            body = resp.read(16 << 20)
        except ImageError as e:
            raise ImageError(f'Get "{src.scheme}://{host}/v1/search?{query}": {e}') from None
        if resp.status != 200:
            raise ImageError(f"Unexpected status code {resp.status}")
        try:
            results = json.loads(body).get("results") or []
        except (ValueError, AttributeError):
            raise ImageError(f"{host}: /v1/search: the answer is not JSON with 'results'") from None
    finally:
        src.close()
    out = []
    for r in results:
        if isinstance(r, dict):
            out.append({"star_count": int(r.get("star_count") or 0),
                        "is_official": bool(r.get("is_official")), "name": str(r.get("name", "")),
                        "is_automated": bool(r.get("is_automated")),
                        "description": str(r.get("description") or "")})
    return out
