"""Where images come from: an OCI image layout directory and a `docker save` archive here;
a registry in registry.py. A source hands out bytes; the store checks every digest."""
from __future__ import annotations

import io
import json
import os
import tarfile

from .errors import ImageError, ImageNotFound
from .manifest import (DOCKER_CONFIG, MAX_MANIFEST, OCI_MANIFEST, Descriptor, is_index,
                       load_json, pick_platform, sha256, verify)
from .reference import Reference, check_digest

TAG_ANNOTATION = "org.opencontainers.image.ref.name"


class Source:
    """What a pull needs from a source: the manifest for this platform, then blobs."""

    ref: Reference
    name_hint = ""  # a name the source itself gives the image

    def top(self) -> tuple:
        """→ (bytes, media type from the transport or "", digest it must have or "")."""
        raise NotImplementedError

    def manifest_blob(self, desc: Descriptor) -> tuple:
        """→ (bytes, media type) of a manifest an index points to."""
        raise NotImplementedError

    def open_blob(self, desc: Descriptor):
        """A readable file object with the blob's bytes (unverified: the store verifies)."""
        raise NotImplementedError

    def resolve(self) -> tuple:
        """→ (manifest bytes, manifest digest, media type) of the image for this platform."""
        data, mt, digest = self.top()
        if digest:
            verify(data, digest, f"{self.ref}: manifest")
        else:
            digest = sha256(data)
        for _ in range(4):  # an index may point at an index; not without end
            if not is_index(data, mt):
                return data, digest, mt
            desc = pick_platform(data, mt)
            data, mt = self.manifest_blob(desc)
            verify(data, desc.digest, f"{self.ref}: manifest {desc.digest}")
            digest = desc.digest
        raise ImageError(f"{self.ref}: indexes nested too deeply")

    def close(self) -> None:
        pass


def _read_limited(f, limit: int, what: str) -> bytes:
    data = f.read(limit + 1)
    if len(data) > limit:
        raise ImageError(f"{what}: larger than {limit} bytes")
    return data


class OCILayout(Source):
    def __init__(self, ref: Reference):
        self.ref = ref
        self.dir = ref.path
        try:
            with open(os.path.join(self.dir, "oci-layout"), "rb") as f:
                layout = load_json(_read_limited(f, 4096, "oci-layout"), f"{self.dir}/oci-layout")
        except FileNotFoundError:
            raise ImageNotFound(f"{ref}: {self.dir} is not an OCI image layout (no oci-layout file)") from None
        if not str(layout.get("imageLayoutVersion", "")).startswith("1."):
            raise ImageError(f"{self.dir}/oci-layout: unsupported imageLayoutVersion "
                             f"{layout.get('imageLayoutVersion')!r}")

    def _blob_path(self, digest: str) -> str:
        return os.path.join(self.dir, "blobs", "sha256", check_digest(digest, "descriptor")[7:])

    def top(self) -> tuple:
        with open(os.path.join(self.dir, "index.json"), "rb") as f:
            index = load_json(_read_limited(f, MAX_MANIFEST, "index.json"), f"{self.dir}/index.json")
        entries = [Descriptor.parse(e, f"index.json manifests[{i}]")
                   for i, e in enumerate(index.get("manifests") or [])]
        tag = self.ref.tag
        if tag:
            chosen = [d for d in entries if d.annotations.get(TAG_ANNOTATION) == tag]
            if not chosen:
                tags = sorted({d.annotations.get(TAG_ANNOTATION, "") for d in entries} - {""})
                raise ImageNotFound(f"{self.ref}: no tag {tag!r} in {self.dir}/index.json "
                                    f"(tags: {', '.join(tags) or 'none'})")
        else:
            chosen = entries
            if len(chosen) != 1:
                raise ImageError(f"{self.ref}: the layout holds {len(chosen)} images; name one "
                                 "with oci:DIR:TAG")
        desc = chosen[-1]
        data, mt = self.manifest_blob(desc)
        return data, mt, desc.digest

    def manifest_blob(self, desc: Descriptor) -> tuple:
        with self.open_blob(desc) as f:
            return _read_limited(f, MAX_MANIFEST, f"manifest {desc.digest}"), desc.media_type

    def open_blob(self, desc: Descriptor):
        try:
            return open(self._blob_path(desc.digest), "rb")
        except FileNotFoundError:
            raise ImageNotFound(f"{self.ref}: blob {desc.digest} is missing from {self.dir}/blobs") from None


def _open_archive(ref: Reference) -> tuple:
    """The tar at ref.path and its regular files by normalised name; errors name the file."""
    try:
        tar = tarfile.open(ref.path, "r:")
    except FileNotFoundError:
        raise ImageNotFound(f"{ref}: no such file {ref.path}") from None
    except (tarfile.TarError, OSError) as e:
        raise ImageError(f"{ref}: not a tar archive: {e}") from None
    return tar, {os.path.normpath(m.name): m for m in tar.getmembers() if m.isfile()}


class DockerArchive(Source):
    """`docker save` / `skopeo copy … docker-archive:` files: manifest.json names the config
    and the layer tars; the manifest is made here, in OCI form, from those."""

    def __init__(self, ref: Reference):
        self.ref = ref
        self.tar, self.members = _open_archive(ref)
        self.layer_files: dict = {}

    def _member(self, name: str):
        m = self.members.get(os.path.normpath(name))
        if m is None:
            raise ImageError(f"{self.ref}: {name!r} named in manifest.json is not in the archive")
        return m

    def _read(self, name: str, limit: int = MAX_MANIFEST) -> bytes:
        f = self.tar.extractfile(self._member(name))
        return _read_limited(f, limit, f"{self.ref}: {name}")

    def top(self) -> tuple:
        if "manifest.json" not in self.members:
            raise ImageError(f"{self.ref}: no manifest.json: not a docker-archive")
        try:
            entries = json.loads(self._read("manifest.json"))
        except ValueError as e:
            raise ImageError(f"{self.ref}: manifest.json: {e}") from None
        if not isinstance(entries, list) or not entries:
            raise ImageError(f"{self.ref}: manifest.json: no image in it")
        want = self.ref.tag
        if want.startswith("@") and want[1:].isdigit():  # skopeo's FILE:@N
            if int(want[1:]) >= len(entries):
                raise ImageNotFound(f"{self.ref}: the archive holds {len(entries)} images")
            entries = [entries[int(want[1:])]]
        elif want:
            full = want if ":" in want.rsplit("/", 1)[-1] else want + ":latest"
            entries = [e for e in entries if isinstance(e, dict) and
                       any(t in (want, full) or t.endswith("/" + full) for t in e.get("RepoTags") or [])]
            if not entries:
                raise ImageNotFound(f"{self.ref}: no image tagged {want!r} in the archive")
        elif len(entries) != 1:
            raise ImageError(f"{self.ref}: the archive holds {len(entries)} images; name one "
                             "with docker-archive:FILE:NAME:TAG")
        entry = entries[0]
        tags = entry.get("RepoTags") if isinstance(entry, dict) else None
        # the name `docker load` would give it, when the archive has one
        if isinstance(tags, list) and len(tags) == 1 and isinstance(tags[0], str):
            self.name_hint = tags[0]
        self.repo_tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ImageError(f"{self.ref}: manifest.json: an entry without Config or Layers")
        config = self._read(entry["Config"])
        cdigest = sha256(config)
        diff_ids = ((load_json(config, "image config").get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(entry["Layers"]):
            raise ImageError(f"{self.ref}: manifest.json lists {len(entry['Layers'])} layers, "
                             f"the config {len(diff_ids)}")
        self.config_bytes = config
        layers = []
        for i, name in enumerate(entry["Layers"]):
            if not isinstance(name, str):
                raise ImageError(f"{self.ref}: manifest.json Layers[{i}]: not a file name")
            m = self._member(name)
            parts = os.path.normpath(name).split("/")
            # docker 25+ writes OCI blobs (blobs/sha256/HEX, maybe compressed); older tools
            # the uncompressed layer, whose digest is its diff id
            digest = ("sha256:" + parts[2] if len(parts) == 3 and parts[:2] == ["blobs", "sha256"]
                      else diff_ids[i])
            check_digest(digest, f"{self.ref}: layer {name}")
            self.layer_files[digest] = m
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": digest, "size": m.size})
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": DOCKER_CONFIG, "digest": cdigest, "size": len(config)},
                    "layers": layers}
        self.config_digest = cdigest
        data = json.dumps(manifest, separators=(",", ":")).encode()
        return data, OCI_MANIFEST, ""

    def manifest_blob(self, desc):
        raise ImageError(f"{self.ref}: an archive holds no index")

    def open_blob(self, desc: Descriptor):
        if desc.digest == getattr(self, "config_digest", None):
            return io.BytesIO(self.config_bytes)
        m = self.layer_files.get(desc.digest)
        if m is None:
            raise ImageNotFound(f"{self.ref}: blob {desc.digest} is not in the archive")
        if m.sparse is not None:
            return self.tar.extractfile(m)
        # a file of its own: layers are read in parallel, the tarfile's handle is shared
        return _Slice(self.ref.path, m.offset_data, m.size)

    def close(self) -> None:
        self.tar.close()



class OCIArchive(Source):
    """`oci-archive:FILE[:REF|:@N]`: the layout's files read in place from the tar."""

    def __init__(self, ref: Reference):
        self.ref = ref
        self.tar, self.members = _open_archive(ref)
        if "oci-layout" not in self.members or "index.json" not in self.members:
            raise ImageError(f"{ref}: not an OCI archive (no oci-layout or index.json)")

    def _read(self, name: str, limit: int = MAX_MANIFEST) -> bytes:
        m = self.members.get(name)
        if m is None:
            raise ImageNotFound(f"{self.ref}: {name} is missing from the archive")
        return _read_limited(self.tar.extractfile(m), limit, f"{self.ref}: {name}")

    def entries(self) -> list:
        index = load_json(self._read("index.json"), f"{self.ref}: index.json")
        return [Descriptor.parse(e, f"index.json manifests[{i}]")
                for i, e in enumerate(index.get("manifests") or [])]

    def top(self) -> tuple:
        entries = self.entries()
        want = self.ref.tag
        if want.startswith("@") and want[1:].isdigit():
            if int(want[1:]) >= len(entries):
                raise ImageNotFound(f"{self.ref}: the archive holds {len(entries)} images")
            chosen = [entries[int(want[1:])]]
        elif want:
            chosen = [d for d in entries if d.annotations.get(TAG_ANNOTATION) == want]
            if not chosen:
                raise ImageNotFound(f"{self.ref}: no image named {want!r} in the archive")
        else:
            chosen = entries
            if len(chosen) != 1:
                raise ImageError(f"{self.ref}: the archive holds {len(chosen)} images; name one "
                                 "with oci-archive:FILE:NAME")
        desc = chosen[-1]
        name = desc.annotations.get(TAG_ANNOTATION, "")
        if "/" in name or ":" in name:  # podman writes the image's whole name
            self.name_hint = name
        data, mt = self.manifest_blob(desc)
        return data, mt, desc.digest

    def manifest_blob(self, desc: Descriptor) -> tuple:
        return self._read("blobs/sha256/" + check_digest(desc.digest, "descriptor")[7:]), desc.media_type

    def open_blob(self, desc: Descriptor):
        m = self.members.get("blobs/sha256/" + check_digest(desc.digest, "descriptor")[7:])
        if m is None:
            raise ImageNotFound(f"{self.ref}: blob {desc.digest} is missing from the archive")
        if m.sparse is not None:
            return self.tar.extractfile(m)
        return _Slice(self.ref.path, m.offset_data, m.size)

    def close(self) -> None:
        self.tar.close()


class _Slice(io.RawIOBase):
    """`size` bytes of a file from `offset`, through a handle of its own."""

    def __init__(self, path: str, offset: int, size: int):
        super().__init__()
        self.f = open(path, "rb")
        self.f.seek(offset)
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()
        super().close()
