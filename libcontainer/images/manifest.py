"""Manifests and indexes in both dialects (OCI and Docker schema 2): parsing, checking, and
picking this machine's entry from an index or manifest list."""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field

from .errors import DigestMismatch, ImageError
from .reference import check_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIGS = (OCI_CONFIG, DOCKER_CONFIG)
LAYERS = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
# what a registry is asked for: OCI types must be named or it never answers with them
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
MAX_MANIFEST = 4 << 20  # bytes; a manifest or config is small, a hostile one need not be


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify(data: bytes, digest: str, what: str) -> bytes:
    got = sha256(data)
    if got != digest:
        raise DigestMismatch(f"{what}: digest mismatch: expected {digest}, got {got}")
    return data


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, d, what: str) -> "Descriptor":
        if not isinstance(d, dict):
            raise ImageError(f"{what}: not a descriptor object")
        size = d.get("size")
        if not isinstance(size, int) or size < 0:
            raise ImageError(f"{what}.size: missing or negative")
        mt = d.get("mediaType", "")
        if not isinstance(mt, str):
            raise ImageError(f"{what}.mediaType: not a string")
        return cls(mt, check_digest(d.get("digest"), f"{what}.digest"), size,
                   d.get("platform") or {}, d.get("annotations") or {})


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple
    annotations: dict


def load_json(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{what}: not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ImageError(f"{what}: not a JSON object")
    return obj


def media_type_of(obj: dict, header_type: str = "") -> str:
    """A manifest's type: its own mediaType field, else the transport's, else by shape (an
    OCI manifest or index need not say what it is)."""
    mt = obj.get("mediaType") or header_type
    if mt in DOCKER_SCHEMA1 or obj.get("schemaVersion") == 1:
        raise ImageError("Docker schema 1 manifests are not supported (ask for schema 2)")
    if mt in INDEXES or mt in MANIFESTS:
        return mt
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj and "layers" in obj:
        return OCI_MANIFEST
    raise ImageError(f"unsupported manifest media type {mt!r}")


def parse_manifest(data: bytes, header_type: str = "") -> Manifest:
    obj = load_json(data, "manifest")
    mt = media_type_of(obj, header_type)
    if mt not in MANIFESTS:
        raise ImageError(f"manifest: expected an image manifest, got {mt}")
    config = Descriptor.parse(obj.get("config"), "manifest.config")
    if config.media_type and config.media_type not in CONFIGS:
        raise ImageError(f"manifest.config.mediaType: {config.media_type!r} is not an image config")
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise ImageError("manifest.layers: missing")
    descs = tuple(Descriptor.parse(layer, f"manifest.layers[{i}]") for i, layer in enumerate(layers))
    for i, d in enumerate(descs):
        if d.media_type not in LAYERS:
            raise ImageError(f"manifest.layers[{i}].mediaType: unsupported layer type {d.media_type!r}")
    return Manifest(mt, config, descs, obj.get("annotations") or {})


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
         "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def this_platform() -> dict:
    machine = platform.machine()
    p = {"os": "linux", "architecture": _ARCH.get(machine, machine)}
    if machine.startswith("armv"):
        p["variant"] = "v" + machine[4]
    return p


def pick_platform(data: bytes, header_type: str = "", want: dict | None = None) -> Descriptor:
    """The index entry for this platform (os, architecture, and variant when both say)."""
    obj = load_json(data, "index")
    entries = obj.get("manifests")
    if not isinstance(entries, list):
        raise ImageError("index.manifests: missing")
    want = want or this_platform()
    seen = []
    for i, e in enumerate(entries):
        d = Descriptor.parse(e, f"index.manifests[{i}]")
        p = d.platform
        seen.append(f"{p.get('os', '?')}/{p.get('architecture', '?')}"
                    + (f"/{p['variant']}" if p.get("variant") else ""))
        if p.get("os") != want["os"] or p.get("architecture") != want["architecture"]:
            continue
        if want.get("variant") and p.get("variant") and p["variant"] != want["variant"]:
            continue
        return d
    raise ImageError(f"no image for {want['os']}/{want['architecture']} in the index "
                     f"(it has: {', '.join(seen) or 'nothing'})")


def is_index(data: bytes, header_type: str = "") -> bool:
    return media_type_of(load_json(data, "manifest"), header_type) in INDEXES
