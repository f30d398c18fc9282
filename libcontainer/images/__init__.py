"""Images: pull from a registry, an OCI layout or a docker archive into a content-addressed
store, unpack each layer once (safely), and make bundles whose rootfs is an overlay of them.

    from libcontainer import images
    img = images.pull("docker://127.0.0.1:5000/tools:1", storage="/srv/store", tls_verify=False)
    images.bundle("tools:1", "/srv/bundles/job", storage="/srv/store", args=["make", "test"])
    libcontainer.run("/srv/bundles/job", "job1")
    images.remove_bundle("/srv/bundles/job", storage="/srv/store")
    images.rmi("tools:1", storage="/srv/store")

Nothing here is imported by `runner run` of a plain bundle."""
from __future__ import annotations

from .bundle import create as bundle
from .bundle import remove as remove_bundle
from .errors import (DigestMismatch, ImageError, ImageNotFound, InvalidArgument, LayerRefused,
                     RegistryError)
from .store import Image, Store, default_root


def pull(source: str, storage: str | None = None, name: str = "", tls_verify: bool = True,
         creds: str = "", progress=None) -> Image:
    """Pull `source` (docker://…, oci:DIR[:TAG], docker-archive:FILE) into the store."""
    return Store(storage).pull(source, name=name, tls_verify=tls_verify, creds=creds,
                               progress=progress)


def push(image: str, dest: str, storage: str | None = None, tls_verify: bool = True,
         creds: str = "", format: str = "", compression: str = "gzip", progress=None,
         chunk_size: int = 0) -> str:
    """Push `image` to `dest` (docker://HOST/NAME[:TAG], oci:DIR[:TAG], oci-archive:FILE,
    docker-archive:FILE[:NAME:TAG]); → the manifest digest ("" for a docker-archive)."""
    from .pusher import CHUNK
    from .pusher import push as _push

    return _push(Store(storage), image, dest, tls_verify=tls_verify, creds=creds, fmt=format,
                 compression=compression, progress=progress, chunk_size=chunk_size or CHUNK)


def save(images: list, output: str, storage: str | None = None, format: str = "docker-archive",
         compression: str = "gzip", progress=None) -> None:
    """Write `images` (names or ids) to the archive `output`: docker-archive (what docker
    load reads) or oci-archive."""
    from . import archive
    from .progress import Quiet

    store = Store(storage)
    progress = progress or Quiet()
    if isinstance(images, str):
        images = [images]
    with store.shared():
        # by name: that name goes into the archive; by id: none (as docker save)
        items = [(img.id, [] if _is_id(asked, img) else [_matched_name(asked, img)])
                 for img, asked in ((store.get(i), i) for i in images)]
        if format == "docker-archive":
            archive.write_docker_archive(store, items, output, progress)
        elif format == "oci-archive":
            archive.write_oci_archive(store, [(i, n[0] if n else "") for i, n in items], output,
                                      progress, compression)
        else:
            raise InvalidArgument(f"--format: {format!r} is not docker-archive or oci-archive")


def _matched_name(asked: str, img) -> str:
    from .reference import normalize_name

    name = normalize_name(asked)
    for candidate in (name, "localhost/" + name, "docker.io/" + name, "docker.io/library/" + name):
        if candidate in img.names:
            return candidate
    return name


def _is_id(asked: str, img) -> bool:
    a = asked[7:] if asked.startswith("sha256:") else asked
    return len(a) >= 4 and img.id.startswith(a)


def load(path: str, storage: str | None = None, progress=None) -> list:
    """Every image of a docker-archive or oci-archive (gzip-compressed or not); → [(Image,
    names)]."""
    from . import archive
    from .progress import Quiet

    return archive.load(Store(storage), path, progress or Quiet())


def tag(image: str, name: str, storage: str | None = None) -> Image:
    return Store(storage).tag(image, name)


def prune(storage: str | None = None) -> list:
    """gc, plus the upload sessions of killed pushes (cancelled with DELETE)."""
    from .pusher import cancel_stale_uploads

    store = Store(storage)
    done = store.gc()
    done += [f"upload session {u}" for u in cancel_stale_uploads(store)]
    return done


def list_images(storage: str | None = None) -> list:
    return Store(storage).images()


def rmi(image: str, storage: str | None = None, force: bool = False) -> list:
    return Store(storage).remove(image, force=force)


def gc(storage: str | None = None) -> list:
    return Store(storage).gc()


__all__ = ["pull", "push", "save", "load", "tag", "prune", "list_images", "rmi", "gc", "bundle", "remove_bundle", "Store", "Image",
           "default_root", "ImageError", "ImageNotFound", "LayerRefused", "DigestMismatch",
           "RegistryError"]


def build(context: str, dockerfile: str | None = None, tag: str = "", build_args: dict | None = None,
          storage: str | None = None, progress=None, **options) -> Image:
    """Build a Dockerfile into the store (see images.builder.build for the options)."""
    from .builder import build as _build

    return _build(context, dockerfile=dockerfile, tag=tag, build_args=build_args,
                  storage=storage, progress=progress, **options)


def commit(container: str, image: str = "", changes: list | None = None, message: str = "",
           author: str = "", root: str | None = None, storage: str | None = None,
           pause: bool = True) -> Image:
    """A container made from an image (overlay driver) → a new image with its changes."""
    from .commit import commit as _commit

    return _commit(container, image, changes=changes, message=message, author=author,
                   root=root, storage=storage, pause=pause)
