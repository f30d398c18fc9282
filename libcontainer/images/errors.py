"""Errors of the image side. Each names what was wrong: the source argument, the layer entry,
the digest, or the registry's reply."""
from __future__ import annotations

from ..errors import ContainerError, InvalidArgument, NotFound


class ImageError(ContainerError):
    """An image, a source or the store is wrong or unusable."""


class LayerRefused(ImageError):
    """A layer entry that would touch something outside its layer, or that no image may hold."""

    def __init__(self, entry: str, reason: str):
        self.entry = entry
        super().__init__(f"layer entry {entry!r}: {reason}")


class DigestMismatch(ImageError):
    pass


class RegistryError(ImageError):
    """The registry refused or failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0):
        self.status = status
        super().__init__(message)


class ImageNotFound(NotFound, ImageError):
    pass


__all__ = ["ImageError", "LayerRefused", "DigestMismatch", "RegistryError", "ImageNotFound",
           "InvalidArgument"]
