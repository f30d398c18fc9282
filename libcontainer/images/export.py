"""An image of the store as blobs again, for push and save: the config as stored (so the
image id stays the same), and each layer's tar stream made again from its unpacked directory
(tarsplit) and compressed (gzip, zstd) or not, verified against its diff id before anything
is sent. Compression is deterministic (no timestamps, fixed level), so the same layer gives
the same blob digest every time; `layers/HEX/blobs.json` remembers the blobs known for a layer
(the one it was pulled as, those made for pushes) and in which repositories they are, for
existence checks and cross-repository mounts without compressing again."""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass

from .errors import DigestMismatch, ImageError, InvalidArgument
from .manifest import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST
from .tarsplit import Reassembled

_CHUNK = 1 << 20
_SAMPLE = 64 << 10
GZIP_LEVEL = 6  # what gzip(1), Go's compress/gzip default and skopeo use
ZSTD_LEVEL = 3  # zstd's default, as c/image uses
COMPRESSIONS = ("gzip", "zstd", "none")

LAYER_TYPES = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("v2s2", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("v2s2", "none"): "application/vnd.docker.image.rootfs.diff.tar",
}


def compression_of(media_type: str) -> str:
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    return "none"


def check_format(fmt: str, compression: str) -> None:
    if fmt not in ("oci", "v2s2"):
        raise InvalidArgument(f"--format: {fmt!r} is not oci or v2s2")
    if compression not in COMPRESSIONS:
        raise InvalidArgument(f"--compression-format: {compression!r} is not gzip or zstd")
    if (fmt, compression) not in LAYER_TYPES:
        raise InvalidArgument("--compression-format zstd: Docker schema 2 manifests cannot "
                              "carry zstd layers (use --format oci)")


class Stopped(ImageError):
    """Another layer failed, or the push was interrupted: this one stops (and cleans up)."""


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str
    path: str = ""  # a file holding it, when it was made here


@dataclass
class Parts:
    """What an image is made of, read from the store."""

    image: object
    config: bytes
    layers: list  # [(diff_id, layer dir)], bottom first

    def config_blob(self, fmt: str) -> Blob:
        return Blob(self.image.config, len(self.config), OCI_CONFIG if fmt == "oci" else DOCKER_CONFIG)


def parts(store, ref: str) -> Parts:
    img = store.get(ref)
    return Parts(img, store.read_blob(img.config),
                 [(d, store.path("layers", d[7:])) for d in img.layers])


def manifest(config: Blob, layers: list, fmt: str) -> bytes:
    obj = {"schemaVersion": 2, "mediaType": OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST,
           "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
           "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers]}
    return json.dumps(obj, indent=3).encode()


def _gzip_member(data: bytes) -> bytes:
    """One gzip member (mtime 0) of a chunk. A chunk whose first 64 KiB do not compress
    (random, or already compressed, data) is stored (level 0), as Go's klauspost/compress
    (skopeo's, podman's) skips incompressible blocks: zlib spends ~10x longer for nothing."""
    level = GZIP_LEVEL
    sample = data[:_SAMPLE]
    if len(sample) == _SAMPLE and len(zlib.compress(sample, 1)) > _SAMPLE * 0.97:
        level = 0
    z = zlib.compressobj(level, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


class _Compressor:
    """The blob of a tar stream fed in any pieces. gzip: a member per 1 MiB of the stream
    (a multi-member gzip file, which gzip(1), Go's and Python's readers take whole), the
    members compressed on two threads (zlib lets go of the GIL); the cut is at fixed
    offsets, so the same stream always gives the same blob. zstd: one frame, level 3."""

    def __init__(self, compression: str):
        self.kind = compression
        self.buf = bytearray()
        self.fed = 0
        self.pending: list = []
        if compression == "gzip":
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=2)
        elif compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise ImageError("--compression-format zstd: the zstandard package is not "
                                 "installed (pip install zstandard)") from None
            self.z = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=False).compressobj()

    def compress(self, data: bytes) -> bytes:
        if self.kind == "none":
            return data
        if self.kind == "zstd":
            return self.z.compress(data)
        self.buf += data
        self.fed += len(data)
        while len(self.buf) >= _CHUNK:
            self.pending.append(self.pool.submit(_gzip_member, bytes(self.buf[:_CHUNK])))
            del self.buf[:_CHUNK]
        out = []
        # results in order; at most a few chunks in flight (memory stays bounded)
        while self.pending and (self.pending[0].done() or len(self.pending) > 3):
            out.append(self.pending.pop(0).result())
        return b"".join(out)

    def flush(self) -> bytes:
        if self.kind == "none":
            return b""
        if self.kind == "zstd":
            return self.z.flush()
        if self.buf or not self.fed:  # the last piece (an empty stream: one empty member)
            self.pending.append(self.pool.submit(_gzip_member, bytes(self.buf)))
            self.buf.clear()
        out = b"".join(f.result() for f in self.pending)
        self.pending = []
        return out

    def close(self) -> None:
        if self.kind == "gzip":
            for f in self.pending:
                f.cancel()
            self.pool.shutdown(wait=True)


def layer_stream(layer_dir: str, diff_id: str):
    """The layer's tar stream as a file (read, digest() at the end, close): from its
    tar-split record (pulled, loaded, add_layer_tar), else written again by layerdiff (the
    layers build and commit make: their tar is a function of the tree)."""
    from .tarsplit import NAME

    if os.path.exists(os.path.join(layer_dir, NAME)):
        return Reassembled(layer_dir, f"layer {diff_id}")
    return _Regenerated(os.path.join(layer_dir, "diff"))


class _Regenerated:
    """layerdiff.write_tar of a layer directory, through a pipe from a thread."""

    def __init__(self, root: str):
        import threading

        from .layerdiff import write_tar

        r, w = os.pipe()
        self.r = os.fdopen(r, "rb")
        self.hash = hashlib.sha256()
        self.size = 0
        self.error: list = []

        def produce():
            try:
                with os.fdopen(w, "wb") as out:
                    write_tar(root, out)
            except BrokenPipeError:
                pass  # the reader stopped early
            except BaseException as e:  # noqa: B902 - handed to the reader
                self.error.append(e)

        self.thread = threading.Thread(target=produce, daemon=True)
        self.thread.start()

    def read(self, n: int = -1) -> bytes:
        data = self.r.read(n)
        if not data:
            self.thread.join()
            if self.error:
                raise self.error[0]
        self.hash.update(data)
        self.size += len(data)
        return data

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def close(self) -> None:
        self.r.close()
        self.thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_layer(layer_dir: str, diff_id: str, compression: str, dest: str, progress=None,
                stop=None) -> Blob:
    """The layer's blob in `dest` (a new file); its tar stream checked against the diff id."""
    h = hashlib.sha256()
    size = 0
    comp = _Compressor(compression)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with layer_stream(layer_dir, diff_id) as src:
            while True:
                if stop is not None and stop.is_set():
                    raise Stopped(f"layer {diff_id}: stopped")
                data = src.read(_CHUNK)
                out = comp.compress(data) if data else comp.flush()
                if out:
                    h.update(out)
                    size += len(out)
                    view = memoryview(out)
                    while view:
                        view = view[os.write(fd, view):]
                if progress is not None and data:
                    progress.update(len(data))
                if not data:
                    break
            if src.digest() != diff_id:
                raise DigestMismatch(f"layer {diff_id}: made again from the store, its tar "
                                     f"stream has digest {src.digest()} (the stored layer was "
                                     "changed)")
    finally:
        comp.close()
        os.close(fd)
    return Blob("sha256:" + h.hexdigest(), size, compression, dest)


# ---- what blobs a layer is known as, and where they are ------------------------------------

def known_blobs(layer_dir: str) -> list:
    try:
        with open(os.path.join(layer_dir, "blobs.json"), "rb") as f:
            data = json.loads(f.read())
        return [b for b in data.get("blobs", []) if isinstance(b, dict)]
    except (OSError, ValueError, AttributeError):
        pass
    try:  # the blob it was pulled as
        with open(os.path.join(layer_dir, "layer.json"), "rb") as f:
            meta = json.loads(f.read())
        if meta.get("digest") and meta.get("compression"):
            return [{"digest": meta["digest"], "size": meta["size"],
                     "compression": meta["compression"], "repos": meta.get("repos", [])}]
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    return []


def remember_blob(layer_dir: str, digest: str, size: int, compression: str, repo: str = "") -> None:
    """Add a blob (and a repository that has it) to the layer's blobs.json; best effort: it
    is a cache, and a layer directory that cannot be written (another user's store) is fine."""
    from .atomic import write_atomic

    blobs = known_blobs(layer_dir)
    for b in blobs:
        if b.get("digest") == digest:
            if repo and repo not in b.setdefault("repos", []):
                b["repos"] = (b["repos"] + [repo])[-20:]
            break
    else:
        blobs.append({"digest": digest, "size": size, "compression": compression,
                      "repos": [repo] if repo else []})
    try:
        write_atomic(os.path.join(layer_dir, "blobs.json"),
                     json.dumps({"blobs": blobs[-10:]}).encode())
    except OSError:
        pass
