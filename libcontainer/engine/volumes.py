"""Volumes, the `local` driver: DATA/volumes/<name>/_data, with meta.json beside it. A new
volume mounted where the image has files gets a copy of them first (docker's copy-up)."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import threading

from .errors import BadRequest, Conflict, NotFound
from ..state import crash_point
from .records import now, read_json, write_json

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Volumes:
    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, 0o711, exist_ok=True)
        self._sweep()
        self.lock = threading.RLock()
        self.users: dict = {}  # volume name → set of container ids (filled by the engine)

    def _sweep(self) -> None:
        """What a killed daemon left half-made or half-removed: a directory without
        meta.json (written last by create; removal renames the directory away first)."""
        for n in os.listdir(self.root):
            d = os.path.join(self.root, n)
            if n.startswith(".gone-") or not os.path.exists(os.path.join(d, "meta.json")):
                shutil.rmtree(d, ignore_errors=True)

    def _meta(self, name: str) -> dict | None:
        return read_json(os.path.join(self.root, name, "meta.json"))

    def create(self, name: str = "", labels=None, driver: str = "local", opts=None,
               anonymous: bool = False) -> tuple:
        """→ (volume, made now)."""
        if driver not in ("local", "", None):
            raise NotFound(f"error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        if opts:
            raise BadRequest("the local driver here takes no options")
        name = name or secrets.token_hex(32)
        if not VOLUME_NAME.match(name):
            raise BadRequest(f"create {name}: \"{name}\" includes invalid characters for a local "
                             "volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed")
        with self.lock:
            meta = self._meta(name)
            if meta:
                return self.inspect(name), False
            d = os.path.join(self.root, name)
            os.makedirs(os.path.join(d, "_data"), 0o755, exist_ok=True)
            crash_point("volume dir made")
            meta = {"Name": name, "Labels": dict(labels or {}), "CreatedAt": now(),
                    "Anonymous": anonymous}
            write_json(os.path.join(d, "meta.json"), meta)
            return self.inspect(name), True

    def inspect(self, name: str) -> dict:
        meta = self._meta(name)
        if not meta:
            raise NotFound(f"get {name}: no such volume")
        return {"CreatedAt": meta["CreatedAt"], "Driver": "local", "Labels": meta["Labels"] or None,
                "Mountpoint": os.path.join(self.root, name, "_data"), "Name": name,
                "Options": None, "Scope": "local"}

    def list(self) -> list:
        out = []
        for n in sorted(os.listdir(self.root)):
            try:
                out.append(self.inspect(n))
            except NotFound:
                continue
        return out

    def in_use(self, name: str) -> bool:
        return bool(self.users.get(name))

    def remove(self, name: str, force: bool = False) -> None:
        with self.lock:
            if not self._meta(name):
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            if self.in_use(name):
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(sorted(self.users[name]))}]")
            gone = os.path.join(self.root, ".gone-" + name)  # not a volume name: [a-zA-Z0-9] first
            os.rename(os.path.join(self.root, name), gone)
            crash_point("volume renamed away")
            shutil.rmtree(gone)

    def resolve(self, mounts: list, rootfs: str) -> list:
        """Volume mounts get a Source (made when new, with the image's files copied in)."""
        out = []
        for m in mounts:
            m = dict(m)
            if m["Type"] == "volume":
                vol, made = self.create(m["Source"], anonymous=not m["Source"])
                m["Named"] = bool(m["Source"])
                m["Name"] = vol["Name"]
                m["Source"] = vol["Mountpoint"]
                if not m.get("NoCopy"):  # an empty volume gets the image's files (dockerd)
                    _copy_up(os.path.join(rootfs, m["Target"].lstrip("/")), m["Source"])
            out.append(m)
        return out


def _copy_up(src: str, dst: str) -> None:
    if not os.path.isdir(src) or os.path.islink(src) or os.listdir(dst):
        return
    st = os.stat(src)
    os.chmod(dst, st.st_mode & 0o7777)
    os.chown(dst, st.st_uid, st.st_gid)
    for n in os.listdir(src):
        s, d = os.path.join(src, n), os.path.join(dst, n)
        if os.path.isdir(s) and not os.path.islink(s):
            shutil.copytree(s, d, symlinks=True)
        else:
            shutil.copy2(s, d, follow_symlinks=False)
