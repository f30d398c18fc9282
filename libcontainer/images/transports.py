"""Source arguments → the reader for their transport (the registry client only when needed)."""
from __future__ import annotations

from .reference import Reference
from .source import DockerArchive, OCIArchive, OCILayout, Source


def open_source(ref: Reference, tls_verify: bool = True, creds: str = "") -> Source:
    if ref.transport == "oci":
        return OCILayout(ref)
    if ref.transport == "docker-archive":
        return DockerArchive(ref)
    if ref.transport == "oci-archive":
        return OCIArchive(ref)
    from .registry import RegistrySource

    return RegistrySource(ref, tls_verify=tls_verify, creds=creds)
