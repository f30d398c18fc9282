"""The build cache: one small record per step, `build-cache/KEY.json` in the store, KEY =
sha256 of the parent step's key and what decides the step's result (the instruction after
substitution; for RUN the build args it sees; for COPY/ADD the content digest of the
sources). A record holds the layer the step made (if any) and its history `created`, so a
rebuild of an unchanged Dockerfile makes the same image (same id) without running
anything. A record whose layer is gone (rmi collected it) is a miss."""
from __future__ import annotations

import hashlib
import json
import os


def key(parent: str, *parts: str) -> str:
    h = hashlib.sha256(parent.encode())
    for p in parts:
        h.update(b"\0" + p.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class Cache:
    def __init__(self, store, enabled: bool):
        self.store = store
        self.enabled = enabled
        self.dir = store.path("build-cache")

    def get(self, k: str) -> dict | None:
        if not self.enabled:
            return None
        try:
            with open(os.path.join(self.dir, k + ".json"), "rb") as f:
                rec = json.loads(f.read())
        except (OSError, ValueError):
            return None
        layer = rec.get("layer")
        if layer and not os.path.isdir(self.store.path("layers", layer[7:])):
            return None
        return rec

    def put(self, k: str, rec: dict, old: dict | None = None) -> None:
        """Write the record (whole, renamed into place); nothing when `old` (the hit) is it."""
        from ..store import write_atomic

        if old is not None and old == rec:
            return

        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        write_atomic(os.path.join(self.dir, k + ".json"), json.dumps(rec).encode())
