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


def resolve(root: str, path: str, follow_last: bool = True) -> str:
    """`path` of the container → a host path under `root` (symlinks resolved within)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list = []
    hops = 0
    while parts:
        comp = parts.pop(0)
        if comp == "..":
            if done:
                done.pop()
            continue
        full = os.path.join(root, *done, comp)
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
    return os.path.join(root, *done)


def stat_header(root: str, path: str) -> str:
    host = resolve(root, path, follow_last=False)
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


def get(root: str, path: str) -> bytes:
    host = resolve(root, path)
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


def put(root: str, path: str, data: bytes) -> None:
    dest = resolve(root, path)
    if not os.path.isdir(dest):
        raise NotFound(f"Could not find the file {path} in container") if not os.path.exists(dest) \
            else BadRequest(f"extraction point is not a directory: {path}")
    real_root = os.path.realpath(root)
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
                parent = resolve(root, os.path.join(os.path.relpath(dest, root), os.path.dirname(m.name)))
                os.makedirs(parent, exist_ok=True)
                t.extract(m, parent if False else dest, set_attrs=True)
    except tarfile.TarError as e:
        raise BadRequest(f"not a tar archive: {e}") from None
