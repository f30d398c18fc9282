"""docker cp: a path of the container's root filesystem (the overlay its bundle mounts)
as a tar, and a tar extracted into it. Paths resolve inside the root: symlinks are followed
as the container would follow them, never out of it."""
from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile

from .errors import BadRequest, NotFound


def _host(root: str, parts: list, mounts: tuple) -> str:
    """The host path of container path /parts: under the deepest mount (volume or bind)
    whose destination contains it, else under root."""
    path = "/" + "/".join(parts)
    best = ("", root)
    for dest, source in mounts:
        dest = "/" + dest.strip("/")
        if (path == dest or path.startswith(dest.rstrip("/") + "/")) and len(dest) > len(best[0]):
            best = (dest, source)
    rest = path[len(best[0]):].lstrip("/") if best[0] else path.lstrip("/")
    return os.path.join(best[1], rest) if rest else best[1]


def resolve(root: str, path: str, follow_last: bool = True, mounts: tuple = ()) -> str:
    """`path` of the container → a host path under `root` or under the source of one of
    `mounts` ((destination, source) pairs: its volumes and binds, as dockerd mounts them for
    docker cp), symlinks resolved as the container sees them."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list = []
    hops = 0
    while parts:
        comp = parts.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        full = _host(root, done + [comp], mounts)
        if os.path.islink(full) and (parts or follow_last):
            hops += 1
            if hops > 40:
                raise BadRequest(f"{path}: too many levels of symbolic links")
            target = os.readlink(full)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(comp)
    return _host(root, done, mounts)


def stat_header(root: str, path: str, mounts: tuple = ()) -> str:
    host = resolve(root, path, follow_last=False, mounts=mounts)
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        raise NotFound(f"Could not find the file {path} in container") from None
    mode = stat.S_IMODE(st.st_mode)
    # Go's os.FileMode bits, as the docker CLI reads them
    if stat.S_ISDIR(st.st_mode):
        mode |= 1 << 31
    elif stat.S_ISLNK(st.st_mode):
        mode |= 1 << 27
    import time

    info = {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size, "mode": mode,
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
            "linkTarget": os.readlink(host) if stat.S_ISLNK(st.st_mode) else ""}
    return base64.b64encode(json.dumps(info).encode()).decode()


def get(root: str, path: str, mounts: tuple = ()) -> bytes:
    host = resolve(root, path, mounts=mounts)
    if not os.path.lexists(host):
        raise NotFound(f"Could not find the file {path} in container")
    buf = io.BytesIO()
    name = os.path.basename(path.rstrip("/")) or "."
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        if os.path.realpath(host) == os.path.realpath(root):  # the whole root: its entries
            for n in sorted(os.listdir(host)):
                t.add(os.path.join(host, n), arcname=n, recursive=True)
        else:
            t.add(host, arcname=name, recursive=True)
    return buf.getvalue()


def put(root: str, path: str, data: bytes, mounts: tuple = ()) -> None:
    dest = resolve(root, path, mounts=mounts)
    if not os.path.isdir(dest):
        raise NotFound(f"Could not find the file {path} in container") if not os.path.exists(dest) \
            else BadRequest(f"extraction point is not a directory: {path}")
    # the tree the extraction point is in: the root, or the volume or bind it is under
    real_root = next((os.path.realpath(src) for _, src in sorted(mounts, key=lambda m: -len(m[0]))
                      if dest == src or dest.startswith(src.rstrip("/") + "/")),
                     os.path.realpath(root))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
            for m in t.getmembers():
                target = os.path.realpath(os.path.join(dest, m.name))
                if not (target == real_root or target.startswith(real_root + "/")):
                    raise BadRequest(f"the archive has a path outside the container: {m.name!r}")
                if m.islnk() and os.path.isabs(m.linkname):
                    raise BadRequest(f"the archive has a hard link outside it: {m.name!r}")
                if m.isdev():
                    raise BadRequest(f"the archive has a device: {m.name!r}")
                os.makedirs(resolve(root, os.path.join(path, os.path.dirname(m.name)), mounts=mounts),
                            exist_ok=True)
                t.extract(m, dest, set_attrs=True)
    except tarfile.TarError as e:
        raise BadRequest(f"not a tar archive: {e}") from None
