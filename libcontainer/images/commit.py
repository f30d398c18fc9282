"""`commit`: a container made from an image with the overlay driver (`runner run --image`,
`runner bundle`) → a new image: its upper dir written as a layer (layerdiff) on top of the
image's layers, the image config with the `-c` changes (Dockerfile instructions, as
`docker commit --change`) and a history entry. The container is frozen while its files are
read, as docker commit does by default."""
from __future__ import annotations

import os
import threading
import time

from .errors import ImageError
from .store import Image, Store

CHANGES = {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME",
           "WORKDIR", "STOPSIGNAL", "HEALTHCHECK"}


def _changes(config: dict, changes: list) -> None:
    from .builder import metadata
    from .builder.dockerfile import parse

    state = {"shell": list(metadata.DEFAULT_SHELL), "cmd_set": False}
    for n, text in enumerate(changes or [], 1):
        df = parse(text.encode(), f"--change {n}")
        for ins in df.instructions:
            if ins.cmd not in CHANGES:
                raise ins.error(f"{ins.cmd} cannot be a --change (want one of "
                                f"{', '.join(sorted(CHANGES))})")
            env = metadata.env_dict(config)
            metadata.apply(ins, config, env, df.escape, state)


def commit(container: str, image: str = "", changes: list | None = None, message: str = "",
           author: str = "", root: str | None = None, storage: str | None = None,
           pause: bool = True) -> Image:
    import libcontainer

    from .bundle import _key, _read
    from .layerdiff import write_tar
    from .builder.stage import rfc3339

    c = libcontainer.load(container, root)
    store = Store(storage)
    key = _key(os.path.abspath(c.bundle))
    rec = _read(store.path("mounts", key + ".json"))
    if not rec:
        raise ImageError(f"container {container!r}: its bundle {c.bundle} was not made from an "
                         f"image of the store {store.root} (runner run --image, runner bundle)")
    if rec.get("driver") != "overlay":
        raise ImageError(f"container {container!r}: its rootfs is a copy (driver "
                         f"{rec.get('driver')}); commit needs the overlay driver")
    upper = store.path("containers", key, "upper")
    with store.shared():
        base = store.get(rec["image"])
        config = store.config(base)
        cfg = dict(config.get("config") or {})
        _changes(cfg, changes or [])  # a bad change fails before anything is written
        frozen = False
        if pause and c.status == "running":
            try:
                c.pause()
                frozen = True
            except Exception:
                frozen = False
        try:
            r, w = os.pipe()
            err: list = []

            def writer():
                try:
                    with os.fdopen(w, "wb", buffering=1 << 20) as out:
                        write_tar(upper, out)
                except BaseException as e:  # the reader sees a short tar and fails too
                    err.append(e)

            t = threading.Thread(target=writer, daemon=True)
            t.start()
            try:
                with os.fdopen(r, "rb", buffering=1 << 20) as inp:
                    diff_id = store.add_layer_tar(inp)
            finally:
                t.join()
            if err:
                raise ImageError(f"container {container!r}: cannot read its changes: {err[0]}")
        finally:
            if frozen:
                c.resume()
        now = rfc3339(time.time())
        out = {"created": now}
        for k in ("architecture", "os", "variant", "os.version"):
            if k in config:
                out[k] = config[k]
        if author or config.get("author"):
            out["author"] = author or config["author"]
        out["config"] = {k: v for k, v in cfg.items() if v not in (None, "", [], {})}
        out["rootfs"] = {"type": "layers", "diff_ids": list(base.layers) + [diff_id]}
        hist = list(config.get("history") or [])
        entry = {"created": now, "created_by": " ".join(c.spec.process.args) if c.spec.process else ""}
        if author:
            entry["author"] = author
        if message:
            entry["comment"] = message
        hist.append(entry)
        out["history"] = hist
        return store.add_image(out, name=image)


