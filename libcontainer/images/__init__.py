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


def prune(storage: str | None = None) -> list:
    """gc: what no image uses, and what killed pulls left under tmp/."""
    return Store(storage).gc()


def list_images(storage: str | None = None) -> list:
    return Store(storage).images()


def rmi(image: str, storage: str | None = None, force: bool = False) -> list:
    return Store(storage).remove(image, force=force)


def gc(storage: str | None = None) -> list:
    return Store(storage).gc()


__all__ = ["pull", "prune", "list_images", "rmi", "gc", "bundle", "remove_bundle", "Store", "Image",
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
