"""Source arguments, as skopeo spells them: `docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`,
`oci:DIR[:TAG]`, `docker-archive:FILE`; and the digests every blob is named by."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import InvalidArgument

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# distribution/reference: lowercase path components separated by /, with . _ - inside
_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
DEFAULT_REGISTRY = "docker.io"


def check_digest(digest: str, what: str) -> str:
    """Only sha256, and well formed: a digest becomes a file name in the store."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidArgument(f"{what}: {digest!r} is not a sha256 digest")
    return digest


@dataclass(frozen=True)
class Reference:
    """A parsed source. `transport` is docker, oci, oci-archive or docker-archive."""

    transport: str
    path: str = ""        # oci: the layout dir; docker-archive: the file
    registry: str = ""    # docker: host[:port]
    repository: str = ""  # docker: the repository (library/ added for docker.io)
    tag: str = ""
    digest: str = ""

    def default_name(self) -> str:
        """The name the store gives the image when none is asked for."""
        if self.transport == "docker":
            base = f"{self.registry}/{self.repository}"
            return f"{base}@{self.digest}" if self.digest and not self.tag else f"{base}:{self.tag}"
        base = os.path.basename(os.path.normpath(self.path))
        if self.transport in ("docker-archive", "oci-archive"):
            base = base.rsplit(".", 1)[0] if base.endswith(".tar") else base
        return normalize_name(f"localhost/{base.lower()}:{self.tag or 'latest'}")

    def __str__(self) -> str:
        if self.transport == "docker":
            ref = f"{self.registry}/{self.repository}"
            ref += f":{self.tag}" if self.tag else ""
            return "docker://" + ref + (f"@{self.digest}" if self.digest else "")
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")


def parse(source: str) -> Reference:
    if source.startswith("docker://"):
        return _parse_docker(source[len("docker://"):], source)
    if source.startswith("oci:"):
        path, _, tag = source[4:].partition(":")
        if not path:
            raise InvalidArgument(f"source {source!r}: oci: needs a directory (oci:DIR[:TAG])")
        if tag and not _TAG_RE.match(tag):
            raise InvalidArgument(f"source {source!r}: invalid tag {tag!r}")
        return Reference("oci", path=os.path.abspath(path), tag=tag)
    for transport in ("docker-archive", "oci-archive"):
        if source.startswith(transport + ":"):
            path = source[len(transport) + 1:]
            # as skopeo: FILE:NAME:TAG (or FILE:@N, the Nth image) picks an image from an
            # archive of several; for oci-archive the part after FILE is the ref.name
            path, _, ref = path.partition(":")
            if not path:
                raise InvalidArgument(f"source {source!r}: {transport}: needs a file")
            return Reference(transport, path=os.path.abspath(path), tag=ref)
    raise InvalidArgument(f"source {source!r}: unknown transport (want docker://, oci:, "
                          "oci-archive: or docker-archive:)")


def _parse_docker(rest: str, source: str) -> Reference:
    digest = ""
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        check_digest(digest, f"source {source!r}")
    tag = ""
    slash = rest.rfind("/")
    if ":" in rest[slash + 1:]:
        rest, _, tag = rest.rpartition(":")
        if not _TAG_RE.match(tag):
            raise InvalidArgument(f"source {source!r}: invalid tag {tag!r}")
    first, sep, path = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, repo = first, path
    else:
        registry, repo = DEFAULT_REGISTRY, rest
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = "library/" + repo
    if not _HOST_RE.match(registry):
        raise InvalidArgument(f"source {source!r}: invalid registry {registry!r}")
    if not repo or not _NAME_RE.match(repo):
        raise InvalidArgument(f"source {source!r}: invalid repository name {repo!r} "
                              "(lowercase letters, digits, separators)")
    if not tag and not digest:
        tag = "latest"
    return Reference("docker", registry=registry, repository=repo, tag=tag, digest=digest)


def normalize_name(name: str) -> str:
    """A store name: NAME[:TAG] with `:latest` added when no tag or digest is given."""
    if not name or any(c.isspace() for c in name) or "\0" in name:
        raise InvalidArgument(f"image name {name!r}: empty or with white space")
    last = name.rsplit("/", 1)[-1]
    if "@" not in name and ":" not in last:
        name += ":latest"
    return name
