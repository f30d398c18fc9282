"""Images out of the store into files, and files into the store: `docker-archive` (what
`docker save` and `podman save` write and `docker load` reads: manifest.json, the config as
HEX.json, uncompressed layers as HEX.tar, repositories), `oci-archive` (an OCI image layout
in a tar) and `oci:DIR[:TAG]` (an OCI image layout, added to). An archive is written under a
temporary name beside the destination and renamed into place once whole."""
from __future__ import annotations

import io
import json
import os
import tarfile

from . import export
from .errors import ImageError, ImageNotFound, InvalidArgument
from .manifest import MAX_MANIFEST, OCI_INDEX, OCI_MANIFEST, load_json, sha256
from .reference import Reference
from .source import TAG_ANNOTATION, OCIArchive, _read_limited

_MTIME = 0  # archive entries carry no time: the same images give the same archive


def docker_name(name: str) -> str:
    """A store name as `docker save` spells RepoTags (Docker Hub's prefixes dropped)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


class _ArchiveFile:
    """A tar being written to DEST.tmp-PID; `commit()` renames it to DEST."""

    def __init__(self, dest: str):
        self.dest = os.path.abspath(dest)
        d = os.path.dirname(self.dest)
        if not os.path.isdir(d):
            raise InvalidArgument(f"output {dest!r}: no such directory {d}")
        _remove_dead_partials(d, f".{os.path.basename(self.dest)}.tmp-")
        self.tmp = os.path.join(d, f".{os.path.basename(self.dest)}.tmp-{os.getpid()}")
        self.tar = tarfile.open(self.tmp, "w", format=tarfile.PAX_FORMAT)
        self.names: set = set()

    def add(self, name: str, f, size: int, mode: int = 0o644) -> None:
        if name in self.names:
            return
        self.names.add(name)
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = size, _MTIME, mode
        self.tar.addfile(ti, f)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add(name, io.BytesIO(data), len(data))

    def add_dir(self, name: str) -> None:
        if name in self.names:
            return
        self.names.add(name)
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, _MTIME
        self.tar.addfile(ti)

    def commit(self) -> None:
        self.tar.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.rename(self.tmp, self.dest)

    def abort(self) -> None:
        try:
            self.tar.close()
        except (OSError, tarfile.TarError):
            pass
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _remove_dead_partials(d: str, prefix: str) -> None:
    """What a killed save or push left beside its output (PREFIX + PID, the PID gone)."""
    for n in os.listdir(d):
        pid = n[len(prefix):]
        if n.startswith(prefix) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.unlink(os.path.join(d, n))
            except OSError:
                pass


class _Verified:
    """A layer's tar stream being copied into an archive; its digest checked at the end."""

    def __init__(self, src, diff_id: str, progress):
        self.src, self.diff_id, self.progress = src, diff_id, progress

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.progress.update(len(data))
        return data


def _stream_layer(out: _ArchiveFile, name: str, store, diff_id: str, layer_dir: str, line) -> None:
    size = store.layer_size(diff_id)
    with export.layer_stream(layer_dir, diff_id) as src:
        out.add(name, _Verified(src, diff_id, line), size)
        if src.read(1) or src.digest() != diff_id:
            raise ImageError(f"layer {diff_id}: made again from the store, its tar stream is "
                             f"not what its diff id says (the stored layer was changed)")
    line.done()


def write_docker_archive(store, items: list, dest: str, progress) -> None:
    """items: [(image ref, [names to record])]."""
    out = _ArchiveFile(dest)
    try:
        entries, repositories = [], {}
        for ref, names in items:
            p = export.parts(store, ref)
            layers = []
            for diff_id, layer_dir in p.layers:
                name = diff_id[7:] + ".tar"
                layers.append(name)
                if name not in out.names:
                    _stream_layer(out, name, store, diff_id, layer_dir, progress.layer(diff_id, store.layer_size(diff_id)))
            out.add_bytes(p.image.config[7:] + ".json", p.config)
            tags = [docker_name(n) for n in names if "@" not in n]
            same = [e for e in entries if e["Config"] == p.image.config[7:] + ".json"]
            if same:  # one entry per image, its names together (as docker save writes it)
                same[0]["RepoTags"] += [t for t in tags if t not in same[0]["RepoTags"]]
            else:
                entries.append({"Config": p.image.config[7:] + ".json", "RepoTags": tags,
                                "Layers": layers})
            for t in tags:
                repo, _, tag = t.rpartition(":")
                repositories.setdefault(repo, {})[tag] = p.layers[-1][0][7:] if p.layers else ""
        out.add_bytes("manifest.json", json.dumps(entries).encode())
        out.add_bytes("repositories", json.dumps(repositories).encode())
        out.commit()
    except BaseException:
        out.abort()
        raise


def _layer_blobs(store, p, fmt: str, compression: str, tmpdir: str, progress) -> list:
    blobs = []
    for i, (diff_id, layer_dir) in enumerate(p.layers):
        line = progress.layer(diff_id, store.layer_size(diff_id))
        path = os.path.join(tmpdir, f"{len(os.listdir(tmpdir))}-{i}")
        b = export.write_layer(layer_dir, diff_id, compression, path, line)
        b.media_type = export.LAYER_TYPES[(fmt, compression)]
        line.done()
        blobs.append(b)
    return blobs


def write_oci_archive(store, items: list, dest: str, progress, compression: str = "gzip") -> None:
    """items: [(image ref, ref.name annotation or "")]."""
    export.check_format("oci", compression)
    out = _ArchiveFile(dest)
    try:
        with store.tempdir("save-") as tmp:
            out.add_bytes("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
            out.add_dir("blobs/")
            out.add_dir("blobs/sha256/")
            index = []
            for ref, refname in items:
                p = export.parts(store, ref)
                layers = _layer_blobs(store, p, "oci", compression, tmp.path, progress)
                for b in layers:
                    with open(b.path, "rb") as f:
                        out.add("blobs/sha256/" + b.digest[7:], f, b.size)
                    os.unlink(b.path)
                cfg = p.config_blob("oci")
                out.add_bytes("blobs/sha256/" + cfg.digest[7:], p.config)
                m = export.manifest(cfg, layers, "oci")
                out.add_bytes("blobs/sha256/" + sha256(m)[7:], m)
                entry = {"mediaType": OCI_MANIFEST, "digest": sha256(m), "size": len(m)}
                if refname:
                    entry["annotations"] = {TAG_ANNOTATION: refname}
                index.append(entry)
            out.add_bytes("index.json", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                    "manifests": index}).encode())
        out.commit()
    except BaseException:
        out.abort()
        raise


def write_oci_layout(store, ref: str, layout: str, tag: str, progress,
                     compression: str = "gzip") -> str:
    """Add the image to the OCI layout `layout` (made if absent), tagged `tag`; → manifest digest."""
    from .atomic import write_atomic

    export.check_format("oci", compression)
    blobs_dir = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs_dir, exist_ok=True)
    for n in {n.split(".tmp-")[0] for n in os.listdir(blobs_dir) if ".tmp-" in n}:
        _remove_dead_partials(blobs_dir, n + ".tmp-")
    if not os.path.exists(os.path.join(layout, "oci-layout")):
        write_atomic(os.path.join(layout, "oci-layout"), b'{"imageLayoutVersion": "1.0.0"}')
    p = export.parts(store, ref)
    with store.tempdir("save-") as tmp:
        layers = _layer_blobs(store, p, "oci", compression, tmp.path, progress)
        for b in layers:
            final = os.path.join(blobs_dir, b.digest[7:])
            if os.path.exists(final):
                continue
            # a blob file is whole or absent: written beside, renamed into blobs/
            part = final + f".tmp-{os.getpid()}"
            os.rename(b.path, part) if os.stat(tmp.path).st_dev == os.stat(blobs_dir).st_dev \
                else _copy(b.path, part)
            os.rename(part, final)
    cfg = p.config_blob("oci")
    m = export.manifest(cfg, layers, "oci")
    for digest, data in ((cfg.digest, p.config), (sha256(m), m)):
        if not os.path.exists(os.path.join(blobs_dir, digest[7:])):
            write_atomic(os.path.join(blobs_dir, digest[7:]), data)
    index_path = os.path.join(layout, "index.json")
    try:
        with open(index_path, "rb") as f:
            index = load_json(f.read(), index_path)
    except FileNotFoundError:
        index = {"schemaVersion": 2, "manifests": []}
    entries = [e for e in index.get("manifests") or []
               if not (tag and isinstance(e, dict) and (e.get("annotations") or {}).get(TAG_ANNOTATION) == tag)]
    entry = {"mediaType": OCI_MANIFEST, "digest": sha256(m), "size": len(m)}
    if tag:
        entry["annotations"] = {TAG_ANNOTATION: tag}
    index["manifests"] = entries + [entry]
    write_atomic(index_path, json.dumps(index).encode())
    return sha256(m)


def _copy(src: str, dst: str) -> None:
    import shutil

    shutil.copyfile(src, dst)
    os.unlink(src)


# ---- load -----------------------------------------------------------------------------------

def _plain_tar(store, path: str, tmp: str) -> str:
    """A compressed archive (`docker save | gzip`, as docker load takes it) decompressed
    into the store's tmp/; an uncompressed one as it is."""
    from .layer import decompressed

    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"\x1f\x8b" and head != b"\x28\xb5\x2f\xfd":
        return path
    out = os.path.join(tmp, "archive.tar")
    with open(path, "rb") as f, open(out, "wb") as o:
        d = decompressed(f)
        while True:
            chunk = d.read(1 << 20)
            if not chunk:
                break
            o.write(chunk)
    return out


def load(store, path: str, progress) -> list:
    """Every image of a docker-archive or oci-archive file into the store; → [(Image, names)]."""
    if not os.path.isfile(path):
        raise ImageNotFound(f"--input: no such file {path}")
    with store.tempdir("load-") as tmp:
        plain = _plain_tar(store, path, tmp.path)
        try:
            with tarfile.open(plain, "r:") as t:
                names = {os.path.normpath(n) for n in t.getnames()}
        except tarfile.TarError as e:
            raise ImageError(f"--input {path}: not a tar archive: {e}") from None
        out = []
        if "manifest.json" in names:
            with tarfile.open(plain, "r:") as t:
                m = t.getmember(next(n for n in t.getnames() if os.path.normpath(n) == "manifest.json"))
                entries = json.loads(_read_limited(t.extractfile(m), MAX_MANIFEST, "manifest.json"))
            if not isinstance(entries, list):
                raise ImageError(f"--input {path}: manifest.json is not a list")
            for i, e in enumerate(entries):
                tags = [t for t in (e.get("RepoTags") or []) if isinstance(t, str)] if isinstance(e, dict) else []
                img = store.pull(f"docker-archive:{plain}:@{i}", name=tags[0] if tags else None,
                                 progress=progress)
                for t in tags[1:]:
                    img = store.tag(img.id, t)
                out.append((img, tags))
        elif "oci-layout" in names:
            src = OCIArchive(Reference("oci-archive", path=plain))
            try:
                entries = src.entries()
            finally:
                src.close()
            for i, d in enumerate(entries):
                refname = d.annotations.get(TAG_ANNOTATION, "")
                name = refname if ("/" in refname or ":" in refname) else (
                    f"localhost/{refname}" if refname else None)
                img = store.pull(f"oci-archive:{plain}:@{i}", name=name, progress=progress)
                out.append((img, [name] if name else []))
        else:
            raise ImageError(f"--input {path}: neither a docker archive (manifest.json) nor an "
                             "OCI archive (oci-layout)")
        return out
