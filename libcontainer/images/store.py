"""The image store (the seed's Graph): verified blobs, one unpacked directory per layer shared
by every image that has it, names → images, and garbage collection. The on-disk layout is a
format: spec/IMAGES.md describes it.

Locks (flock): `lock` is held shared by every pull and bundle and exclusively by rmi/gc, so
nothing a pull is making or a bundle is using is collected; `layers/.locks/HEX` makes one
process unpack a layer while another pulling the same layer waits and then uses it;
`images.lock` serialises writes of images.json. Every file written is written whole and
renamed into place; a layer is unpacked under tmp/ and renamed into layers/ only once both of
its digests are verified, so a failed pull leaves nothing half-stored."""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass

from .errors import DigestMismatch, ImageError, ImageNotFound, InvalidArgument
from .layer import HashingReader, decompressed, unpack
from .manifest import MAX_MANIFEST, load_json, parse_manifest, verify
from . import tarsplit
from .atomic import write_atomic
from .progress import Quiet
from .reference import check_digest, normalize_name
from .reference import parse as parse_reference
from .blobcheck import _Limited, _Stopped, _check_blob, _compression
from .storelayers import LayerStore, _syncfs
from .storetmp import TempDir, _Flock, reap_tmp


PARALLEL = 3  # layers fetched at once


def default_root() -> str:
    if os.geteuid() == 0:
        return "/var/lib/runner"
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "runner")


@dataclass
class Image:
    id: str              # the config's digest, without "sha256:"
    names: list
    manifest: str        # digest
    config: str          # digest
    layers: list         # diff ids, bottom first
    size: int            # bytes of the unpacked layers (their tar streams), as podman shows it
    created: str         # from the image config
    pulled: float

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Store(LayerStore):
    def __init__(self, root: str | None = None):
        self.root = os.path.abspath(root or default_root())
        self.rootless = os.geteuid() != 0
        try:
            # the root and bundles/ can be passed through: a container in a user namespace
            # must reach its rootfs under bundles/ (run --image); the rest is the store's own
            os.makedirs(self.root, mode=0o711, exist_ok=True)
            os.makedirs(os.path.join(self.root, "bundles"), mode=0o711, exist_ok=True)
            for d in ("blobs/sha256", "layers/.locks", "tmp", "mounts", "containers"):
                os.makedirs(os.path.join(self.root, d), mode=0o700, exist_ok=True)
        except OSError as e:
            raise InvalidArgument(f"--storage: cannot use {self.root}: {e.strerror}") from None
        # what a killed pull (or push, save, gc) left half-made goes at the next operation
        self.reaped = reap_tmp(self.path("tmp"))
        self._owned: dict = {}  # workdir() path → its TempDir (the lock), until placed

    def tempdir(self, prefix: str) -> TempDir:
        return TempDir(self.path("tmp"), prefix)

    # ---- paths and locks ---------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def blob_path(self, digest: str) -> str:
        return self.path("blobs", "sha256", check_digest(digest, "blob")[7:])

    def layer_dir(self, diff_id: str) -> str:
        """The unpacked layer (overlay form) for a diff id."""
        return self.path("layers", check_digest(diff_id, "layer")[7:], "diff")

    def shared(self) -> _Flock:
        return _Flock(self.path("lock"), exclusive=False)

    def exclusive(self) -> _Flock:
        return _Flock(self.path("lock"), exclusive=True)

    # ---- images.json -------------------------------------------------------------------

    def _read_images(self) -> dict:
        try:
            with open(self.path("images.json"), "rb") as f:
                data = load_json(f.read(), f"{self.path('images.json')}")
        except FileNotFoundError:
            return {}
        return {k: Image(**v) for k, v in (data.get("images") or {}).items()}

    def _write_images(self, images: dict) -> None:
        data = {"version": 1, "images": {k: v.to_json() for k, v in sorted(images.items())}}
        write_atomic(self.path("images.json"), json.dumps(data, indent=1).encode() + b"\n")

    def images(self) -> list:
        return sorted(self._read_images().values(), key=lambda i: -i.pulled)

    def get(self, ref: str) -> Image:
        """An image by name (`:latest` implied), by id, by `sha256:ID` or by a unique id prefix."""
        images = self._read_images()
        ref = ref.strip()
        key = ref[7:] if ref.startswith("sha256:") else ref
        if key in images:
            return images[key]
        try:
            name = normalize_name(ref)
        except InvalidArgument:
            name = ref
        # a short name, as podman resolves it locally: as given, then under localhost/ and
        # Docker Hub's spellings
        for candidate in (name, "localhost/" + name, "docker.io/" + name, "docker.io/library/" + name):
            for img in images.values():
                if candidate in img.names:
                    return img
        if len(key) >= 4 and all(c in "0123456789abcdef" for c in key):
            hits = [i for k, i in images.items() if k.startswith(key)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise InvalidArgument(f"image {ref!r}: the id prefix is ambiguous")
        raise ImageNotFound(f"image {ref!r}: no such image in {self.root} (see 'runner images')")

    def layer_size(self, diff_id: str) -> int:
        """The size of the layer's tar stream (uncompressed), whatever blob it came from."""
        return int(self.layer_meta(diff_id).get("unpacked_size") or 0)

    def tag(self, ref: str, name: str) -> Image:
        """Give the image `ref` one more name (taken from any image that had it)."""
        name = normalize_name(name)
        if "@" in name:
            raise InvalidArgument(f"tag {name!r}: a digest is not a tag")
        with self.shared(), _Flock(self.path("images.lock"), exclusive=True):
            img = self.get(ref)
            images = self._read_images()
            for other in images.values():
                if name in other.names and other.id != img.id:
                    other.names.remove(name)
            img = images[img.id]
            if name not in img.names:
                img.names.append(name)
            self._write_images(images)
            return img

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def config(self, img: Image) -> dict:
        return load_json(self.read_blob(img.config), f"image {img.id[:12]} config")

    # ---- pull --------------------------------------------------------------------------

    def pull(self, source: str, name: str | None = "", tls_verify: bool = True, creds: str = "",
             progress=None) -> Image:
        from .transports import open_source

        progress = progress or Quiet()
        ref = parse_reference(source)
        unnamed = name is None  # an untagged image of an archive: stored by id only
        name = normalize_name(name) if name else ""
        with self.shared():
            src = open_source(ref, tls_verify=tls_verify, creds=creds)
            try:
                mbytes, mdigest, mtype = src.resolve()
                if not name and not unnamed:
                    name = normalize_name(src.name_hint) if src.name_hint else ref.default_name()
                manifest = parse_manifest(mbytes, mtype)
                cdesc = manifest.config
                if cdesc.size > MAX_MANIFEST:
                    raise ImageError(f"{ref}: config of {cdesc.size} bytes is too large")
                with src.open_blob(cdesc) as f:
                    cbytes = f.read(cdesc.size + 1)
                verify(cbytes, cdesc.digest, f"{ref}: config {cdesc.digest}")
                config = load_json(cbytes, f"{ref}: image config")
                diff_ids = (config.get("rootfs") or {}).get("diff_ids")
                if not isinstance(diff_ids, list) or len(diff_ids) != len(manifest.layers):
                    raise ImageError(f"{ref}: the config's rootfs.diff_ids do not match the "
                                     f"manifest's {len(manifest.layers)} layers")
                jobs: dict = {}
                for i, (desc, diff_id) in enumerate(zip(manifest.layers, diff_ids)):
                    check_digest(diff_id, f"{ref}: config rootfs.diff_ids[{i}]")
                    jobs.setdefault(diff_id, desc)
                self._fetch_layers(src, jobs, progress)
            finally:
                src.close()
            # the image exists once its manifest, config and name are written, in this order
            for digest, data in ((mdigest, mbytes), (cdesc.digest, cbytes)):
                if not os.path.exists(self.blob_path(digest)):
                    write_atomic(self.blob_path(digest), data)
            img = Image(id=cdesc.digest[7:], names=[name] if name else [], manifest=mdigest,
                        config=cdesc.digest, layers=list(diff_ids),
                        size=sum(self.layer_size(d) for d in set(diff_ids)),
                        created=str(config.get("created") or ""), pulled=time.time())
            with _Flock(self.path("images.lock"), exclusive=True):
                images = self._read_images()
                for other in images.values():  # a name points at one image
                    if name in other.names and other.id != img.id:
                        other.names.remove(name)
                if img.id in images:
                    old = images[img.id]
                    img.names = old.names + ([name] if name and name not in old.names else [])
                images[img.id] = img
                self._write_images(images)
        return img

    def _fetch_layers(self, src, jobs: dict, progress) -> None:
        """Layers are independent (each its own directory): fetched and unpacked in parallel,
        as skopeo and containerd do. The first failure stops the rest; each cleans up."""
        todo = []
        for diff_id, desc in jobs.items():
            line = progress.layer(desc.digest, desc.size)
            if os.path.isdir(self.path("layers", diff_id[7:])):
                line.done("already in the store")
            else:
                todo.append((diff_id, desc, line))
        if len(todo) <= 1:
            for diff_id, desc, line in todo:
                self._ensure_layer(src, desc, diff_id, line)
            return
        from concurrent.futures import ThreadPoolExecutor, wait

        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(todo))) as pool:
            futures = [pool.submit(self._ensure_layer, src, desc, diff_id, line, stop)
                       for diff_id, desc, line in todo]
            try:
                wait(futures, return_when="FIRST_EXCEPTION")
            finally:
                if any(f.done() and f.exception() for f in futures) or sys.exc_info()[0]:
                    stop.set()
                    for f in futures:
                        f.cancel()
        for f in futures:  # the first layer's error, in the image's order
            if not f.cancelled() and f.exception() and not isinstance(f.exception(), _Stopped):
                raise f.exception()

    def _ensure_layer(self, src, desc, diff_id: str, line, stop=None) -> None:
        hexid = diff_id[7:]
        final = self.path("layers", hexid)
        with _Flock(self.path("layers", ".locks", hexid), exclusive=True):
            if os.path.isdir(final):  # another pull unpacked it while this one waited
                line.done("already in the store")
                return
            owned = self.tempdir("layer-")
            tmp = owned.path
            try:
                diff = os.path.join(tmp, "diff")
                os.mkdir(diff, 0o755)
                with src.open_blob(desc) as f:
                    raw = _Limited(f, desc.size, f"layer {desc.digest}", line, stop)
                    tar = HashingReader(decompressed(raw))
                    split = tarsplit.Recorder(tar, os.path.join(tmp, tarsplit.NAME))
                    try:
                        u = unpack(split, diff, self.rootless, split)
                        split.drain()
                        split.close()
                    except BaseException as e:
                        split.abort()
                        if isinstance(e, ImageError):
                            # a blob that is not what the manifest says: that is the error
                            # to report, not what its bytes made the unpacker trip over
                            _check_blob(raw, desc, e)
                        raise
                    raw.drain()
                _check_blob(raw, desc)
                if tar.digest() != diff_id:
                    raise DigestMismatch(f"layer {desc.digest}: its content has digest "
                                         f"{tar.digest()}, the config says {diff_id}")
                ref = src.ref
                meta = {"diff_id": diff_id, "digest": desc.digest, "size": desc.size,
                        "compression": _compression(desc.media_type),
                        "repos": [f"{ref.registry}/{ref.repository}"] if ref.transport == "docker" else [],
                        "unpacked_size": tar.size, "entries": u.entries,
                        "skipped_devices": u.skipped_devices[:100]}
                write_atomic(os.path.join(tmp, "layer.json"), json.dumps(meta).encode())
                _syncfs(tmp)
                os.rename(tmp, final)
                line.done()
            finally:
                owned.release()

    # ---- new images (build, commit, load); new layers: storelayers.LayerStore ---------------

    def add_image(self, config: dict, name: str = "") -> Image:
        """Record an image whose layers (config rootfs.diff_ids) are in the store: the config
        and an OCI manifest (uncompressed layer descriptors: the store keeps no compressed
        blobs) are written, then the name, if any, moves to it. → the Image (id = the
        config's digest; the same config gives the same id)."""
        import hashlib

        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        metas = []
        for d in diff_ids:
            try:
                metas.append(self.layer_meta(d))
            except FileNotFoundError:
                raise ImageError(f"layer {d} is not in the store") from None
        name = normalize_name(name) if name else ""
        cbytes = json.dumps(config, separators=(",", ":")).encode()
        cdigest = "sha256:" + hashlib.sha256(cbytes).hexdigest()
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": cdigest, "size": len(cbytes)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": m["diff_id"], "size": m["unpacked_size"]} for m in metas]}
        mbytes = json.dumps(manifest, separators=(",", ":")).encode()
        mdigest = "sha256:" + hashlib.sha256(mbytes).hexdigest()
        for digest, data in ((mdigest, mbytes), (cdigest, cbytes)):
            if not os.path.exists(self.blob_path(digest)):
                write_atomic(self.blob_path(digest), data)
        img = Image(id=cdigest[7:], names=[name] if name else [], manifest=mdigest,
                    config=cdigest, layers=diff_ids, size=sum(m["unpacked_size"] for m in metas),
                    created=str(config.get("created") or ""), pulled=time.time())
        with _Flock(self.path("images.lock"), exclusive=True):
            images = self._read_images()
            for other in images.values():  # a name points at one image
                if name and name in other.names and other.id != img.id:
                    other.names.remove(name)
            if img.id in images:
                old = images[img.id]
                img.names = old.names + ([name] if name and name not in old.names else [])
            images[img.id] = img
            self._write_images(images)
        return img

    # ---- rmi, gc -----------------------------------------------------------------------

    def in_use(self) -> dict:
        """Mount records: key → record (which bundle uses which image's layers)."""
        out = {}
        for n in os.listdir(self.path("mounts")):
            if n.endswith(".json"):
                try:
                    with open(self.path("mounts", n), "rb") as f:
                        out[n[:-5]] = json.loads(f.read())
                except (OSError, ValueError):
                    continue
        return out

    def remove(self, ref: str, force: bool = False) -> list:
        """`rmi`: untag a name, or remove the image when no name is left; → what was done."""
        with self.exclusive():
            img = self.get(ref)
            done = []
            with _Flock(self.path("images.lock"), exclusive=True):
                images = self._read_images()
                try:
                    asked = normalize_name(ref)
                except InvalidArgument:
                    asked = ref
                if asked in img.names and len(img.names) > 1:
                    images[img.id].names.remove(asked)
                    self._write_images(images)
                    return [f"Untagged: {asked}"]
                users = [r["bundle"] for r in self.in_use().values() if r.get("image") == img.id]
                if users and not force:
                    raise ImageError(f"image {ref!r} is in use by the bundle {users[0]} "
                                     "(runner bundle --remove it first)")
                del images[img.id]
                self._write_images(images)
                done += [f"Untagged: {n}" for n in img.names] + [f"Deleted: sha256:{img.id}"]
            self._gc_locked()
            return done

    def gc(self) -> list:
        """A prune: unreferenced layers and blobs, the build cache, leftovers."""
        with self.exclusive():
            return self._gc_locked(prune_cache=True)

    def _gc_locked(self, prune_cache: bool = False) -> list:
        removed = []
        if os.path.isdir(self.path("builds")):  # workspaces of builds that were killed
            from .builder.workspace import sweep

            removed += sweep(self)
        cache_dir = self.path("build-cache")
        if prune_cache and os.path.isdir(cache_dir):
            shutil.rmtree(cache_dir, ignore_errors=True)
            removed.append("build cache")
        for key, rec in self.in_use().items():
            # a bundle deleted by hand (its rootfs cannot be mounted: rm would have failed)
            if not os.path.isdir(os.path.join(str(rec.get("bundle", "")), "rootfs")):
                shutil.rmtree(self.path("containers", key), ignore_errors=True)
                os.unlink(self.path("mounts", key + ".json"))
                removed.append(f"bundle record {rec.get('bundle')}")
        images = self._read_images()
        keep_layers = {d[7:] for i in images.values() for d in i.layers}
        for rec in self.in_use().values():
            keep_layers.update(d[7:] for d in rec.get("layers", []))
        # the build cache keeps its layers (as Docker keeps intermediate images) until a prune
        if os.path.isdir(cache_dir):
            for n in os.listdir(cache_dir):
                try:
                    with open(os.path.join(cache_dir, n), "rb") as f:
                        layer = json.loads(f.read()).get("layer")
                except (OSError, ValueError):
                    continue
                if layer:
                    keep_layers.add(layer[7:])
        keep_blobs = {d[7:] for i in images.values() for d in (i.manifest, i.config)}
        for n in os.listdir(self.path("layers")):
            if not n.startswith(".") and n not in keep_layers:
                # renamed out first: a layer dir under its name is always whole
                with self.tempdir("gc-") as trash:
                    os.rename(self.path("layers", n), os.path.join(trash.path, n))
                removed.append(f"layer sha256:{n}")
        for n in os.listdir(self.path("layers", ".locks")):
            if n not in keep_layers:
                os.unlink(self.path("layers", ".locks", n))
        for n in os.listdir(self.path("blobs", "sha256")):
            if n not in keep_blobs:
                os.unlink(self.path("blobs", "sha256", n))
        removed += [f"temporary {n}" for n in self.reaped + reap_tmp(self.path("tmp"))]
        self.reaped = []
        return removed
