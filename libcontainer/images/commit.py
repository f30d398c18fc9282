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

    c = libcontainer.load(container, root)
    freeze = None
    if pause and c.status == "running":
        freeze = (c.pause, c.resume)
    return commit_bundle(c.bundle, Store(storage), image=image, changes=changes, message=message,
                         author=author, freeze=freeze, name=container,
                         created_by=" ".join(c.spec.process.args) if c.spec.process else "")


def commit_bundle(bundle: str, store: Store, image: str = "", changes: list | None = None,
                  message: str = "", author: str = "", freeze=None, name: str = "",
                  created_by: str = "", config=None, after_changes=None,
                  extra: dict | None = None) -> Image:
    """A bundle made from an image of the store (bundle.create, overlay driver) → a new
    image. `config(image_config) → dict` gives the config the `changes` apply to (default:
    the image's), `after_changes(config) → dict` what it becomes after them; `freeze`: (pause, resume) around reading the upper dir; `extra`: more
    top-level fields of the image config (dockerd's parent, container…)."""
    from .bundle import _key, _read
    from .layerdiff import write_tar
    from .builder.stage import rfc3339

    name = name or bundle
    key = _key(os.path.abspath(bundle))
    rec = _read(store.path("mounts", key + ".json"))
    if not rec:
        raise ImageError(f"container {name!r}: its bundle {bundle} was not made from an "
                         f"image of the store {store.root} (runner run --image, runner bundle)")
    if rec.get("driver") != "overlay":
        raise ImageError(f"container {name!r}: its rootfs is a copy (driver "
                         f"{rec.get('driver')}); commit needs the overlay driver")
    upper = store.path("containers", key, "upper")
    with store.shared():
        base = store.get(rec["image"])
        base_config = store.config(base)
        cfg = {k: v for k, v in (config(base_config) if config else
                                 base_config.get("config") or {}).items() if v is not None}
        _changes(cfg, changes or [])  # a bad change fails before anything is written
        if after_changes:
            cfg = after_changes(cfg)
        frozen = False
        if freeze:
            try:
                freeze[0]()
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
                raise ImageError(f"container {name!r}: cannot read its changes: {err[0]}")
        finally:
            if frozen:
                freeze[1]()
        now = rfc3339(time.time())
        out = {"created": now}
        for k in ("architecture", "os", "variant", "os.version"):
            if k in base_config:
                out[k] = base_config[k]
        if author or base_config.get("author"):
            out["author"] = author or base_config["author"]
        if message:
            out["comment"] = message
        out.update(extra or {})
        out["config"] = {k: v for k, v in cfg.items() if v not in (None, "", [], {})}
        out["rootfs"] = {"type": "layers", "diff_ids": list(base.layers) + [diff_id]}
        hist = list(base_config.get("history") or [])
        entry = {"created": now, "created_by": created_by}
        if author:
            entry["author"] = author
        if message:
            entry["comment"] = message
        hist.append(entry)
        out["history"] = hist
        return store.add_image(out, name=image)


def import_tar(store: Store, stream, image: str = "", changes: list | None = None,
               message: str = "", source: str = "-") -> Image:
    """docker import: a filesystem tar (gzip, bzip2, xz or plain) → an image of that one layer,
    its config the `changes` (Dockerfile instructions) applied to an empty one, its history
    "Imported from SOURCE" (or `message`), as dockerd records it."""
    import bz2
    import gzip
    import lzma

    from .builder.stage import rfc3339

    cfg: dict = {}
    _changes(cfg, changes or [])  # a bad change fails before anything is read
    head = stream.peek(6)[:6] if hasattr(stream, "peek") else b""
    if head.startswith(b"\x1f\x8b"):
        stream = gzip.GzipFile(fileobj=stream)
    elif head.startswith(b"BZh"):
        stream = bz2.BZ2File(stream)
    elif head.startswith(b"\xfd7zXZ\x00"):
        stream = lzma.LZMAFile(stream)
    try:
        diff_id = store.add_layer_tar(stream)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ImageError(f"import: the source is not a (compressed) tar archive: {e}") from None
    now = rfc3339(time.time())
    out = {"architecture": "amd64", "os": "linux", "created": now,
           "config": {k: v for k, v in cfg.items() if v not in (None, "", [], {})},
           "rootfs": {"type": "layers", "diff_ids": [diff_id]},
           "history": [{"created": now, "comment": message or f"Imported from {source}"}]}
    if message:
        out["comment"] = message
    return store.add_image(out, name=image)
