"""Helpers of the build tests: a busybox base image (an OCI layout made by umoci from the
test rootfs) pulled into a store of ours and into a private buildah store, builds by both
(`runner build`, `buildah bud --layers --runtime runc`), and each one's image unpacked into
a tree: buildah's through skopeo (→ OCI layout) and `umoci unpack`, ours through the vfs
driver (a copy of the layers), to be compared with imagekit.tree."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess

import imagekit as kit

BASE = "localhost/bb:latest"
# struct vfs_cap_data, revision 2, effective: permitted = CAP_NET_RAW (13)
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def base_layout(work: str) -> str:
    """oci:work/base:bb — the busybox rootfs with the files a RUN's container gets bound
    (/etc/hostname, /etc/resolv.conf, as buildah leaves them behind when absent) and a user."""
    layout = os.path.join(work, "base")
    b = os.path.join(work, "base-bundle")
    kit.sh("umoci", "init", "--layout", layout)
    kit.sh("umoci", "new", "--image", f"{layout}:bb")
    kit.sh("umoci", "unpack", "--image", f"{layout}:bb", b)
    r = os.path.join(b, "rootfs")
    kit.sh("cp", "-a", kit.ROOTFS + "/.", r)
    for name, text in (("hostname", ""), ("resolv.conf", "")):
        with open(os.path.join(r, "etc", name), "w") as f:
            f.write(text)
    kit.add_app_user(r)
    # xattrs a layer must carry: a file capability (cap_net_raw+ep) and a user xattr
    capped = f"{r}/usr/bin/capped"
    with open(capped, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(capped, 0o755)
    os.setxattr(capped, "security.capability", CAP_NET_RAW)
    os.setxattr(capped, "user.note", b"kept")
    kit.sh("umoci", "repack", "--image", f"{layout}:bb", b)
    shutil.rmtree(b)
    return layout


def rootfs_layout(work: str, rootfs: str, tag: str) -> str:
    """An OCI layout with one uncompressed layer: the directory `rootfs` as GNU tar writes it
    (a big rootfs: umoci's repack would spend minutes on gzip), plus the files buildah binds
    into a RUN's container and leaves behind empty when absent."""
    import hashlib

    layout = os.path.join(work, f"layout-{tag}")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    extra = os.path.join(work, f"extra-{tag}")
    for name in ("hosts", "hostname", "resolv.conf"):
        if not os.path.lexists(os.path.join(rootfs, "etc", name)):
            os.makedirs(os.path.join(extra, "etc"), exist_ok=True)
            open(os.path.join(extra, "etc", name), "w").close()
    tmp = os.path.join(blobs, "layer.tmp")
    kit.sh("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", rootfs, "-cf", tmp, ".")
    if os.path.isdir(extra):  # the files only: a second entry for etc/ is a duplicate path
        kit.sh("tar", "--numeric-owner", "-C", extra, "-rf", tmp,
               *[f"./etc/{n}" for n in sorted(os.listdir(os.path.join(extra, "etc")))])
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    size = os.path.getsize(tmp)
    os.rename(tmp, os.path.join(blobs, h.hexdigest()))

    def put(obj: dict) -> dict:
        data = json.dumps(obj).encode()
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + d, "size": len(data)}

    cfg = put({"architecture": "amd64", "os": "linux", "config": {},
               "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]},
               "history": [{"created_by": "debootstrap"}]})
    man = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": dict(cfg, mediaType="application/vnd.oci.image.config.v1+json"),
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": "sha256:" + h.hexdigest(), "size": size}]})
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [dict(
            man, mediaType="application/vnd.oci.image.manifest.v1+json",
            annotations={"org.opencontainers.image.ref.name": tag})]}, f)
    return layout


class Buildah:
    """buildah with its own root, runroot and overlay storage under `work`."""

    def __init__(self, work: str):
        self.root = os.path.join(work, "buildah-root")
        self.runroot = os.path.join(work, "buildah-runroot")
        self.work = work

    def cmd(self, *args, check=True, timeout=600, env=None) -> subprocess.CompletedProcess:
        with kit.host_dirs_removed():
            r = subprocess.run(["buildah", "--root", self.root, "--runroot", self.runroot,
                                "--storage-driver", "overlay", *args], capture_output=True,
                               text=True, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise AssertionError(f"buildah {args} failed ({r.returncode}): {r.stderr}{r.stdout}")
        return r

    def pull_base(self, layout: str, name: str = BASE, tag: str = "bb") -> None:
        iid = self.cmd("pull", "-q", f"oci:{layout}:{tag}").stdout.strip().splitlines()[-1]
        self.cmd("tag", iid, name)

    def bud(self, ctx: str, tag: str, *extra, layers: bool = True) -> subprocess.CompletedProcess:
        return self.cmd("bud", f"--layers={str(layers).lower()}", "--runtime", "runc",
                        "--isolation", "chroot", "-q", "-t", tag, *extra, ctx)

    def config(self, tag: str) -> dict:
        out = json.loads(self.cmd("inspect", "--type", "image", tag).stdout)
        return out["OCIv1"]

    def tree(self, tag: str) -> dict:
        layout = os.path.join(self.work, "buildah-out")
        dest = os.path.join(self.work, f"buildah-unpack-{tag.replace('/', '_').replace(':', '_')}")
        kit.skopeo("copy", "--quiet",
                   f"containers-storage:[overlay@{self.root}+{self.runroot}]{tag}",
                   f"oci:{layout}:{tag.replace('/', '_').replace(':', '_')}")
        shutil.rmtree(dest, ignore_errors=True)
        kit.sh("umoci", "unpack", "--image", f"{layout}:{tag.replace('/', '_').replace(':', '_')}", dest)
        t = kit.tree(os.path.join(dest, "rootfs"))
        t["xattrs"] = xattrs(os.path.join(dest, "rootfs"))
        shutil.rmtree(dest)
        return t

    def destroy(self) -> None:
        if os.path.isdir(self.root):
            self.cmd("rmi", "-a", "-f", check=False)
            subprocess.run(["umount", "-R", os.path.join(self.root, "overlay")], capture_output=True)
        for d in (self.root, self.runroot):
            subprocess.run(["rm", "-rf", "--one-file-system", d], capture_output=True)


def xattrs(root: str) -> dict:
    """path → {name: value} of every entry that has xattrs (overlayfs' own left out)."""
    out = {}
    for base, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(base, n)
            try:
                names = os.listxattr(p, follow_symlinks=False)
            except OSError:
                continue
            got = {x: os.getxattr(p, x, follow_symlinks=False) for x in names
                   if not x.startswith(("trusted.overlay.", "user.overlay.", "security.selinux"))}
            if got:
                out["/" + os.path.relpath(p, root)] = got
    return out


def our_tree(store: str, image: str, work: str) -> dict:
    dest = os.path.join(work, "ours-vfs")
    r = kit.runner("bundle", "--storage", store, "--driver", "vfs", image, dest, "true")
    assert r.returncode == 0, r.stderr
    try:
        t = kit.tree(os.path.join(dest, "rootfs"))
        t["xattrs"] = xattrs(os.path.join(dest, "rootfs"))
        return t
    finally:
        kit.runner("bundle", "--storage", store, "--remove", dest)


def our_config(store: str, image: str) -> dict:
    from libcontainer.images import Store

    s = Store(store)
    return s.config(s.get(image))


CONFIG_FIELDS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Labels",
                 "Volumes", "StopSignal", "OnBuild")


def compare_configs(ours: dict, theirs: dict) -> list:
    """The fields a user sees, history (count and which are empty layers), layer count."""
    problems = []
    a, b = ours.get("config") or {}, dict(theirs.get("config") or {})
    labels = dict(b.get("Labels") or {})
    labels.pop("io.buildah.version", None)
    b["Labels"] = labels or None
    for k in CONFIG_FIELDS:
        if (a.get(k) or None) != (b.get(k) or None):
            problems.append(f"config {k}: ours {a.get(k)!r} buildah's {b.get(k)!r}")
    ha = [bool(h.get("empty_layer")) for h in ours["history"]]
    hb = [bool(h.get("empty_layer")) for h in theirs["history"]]
    if ha != hb:
        problems.append(f"history (empty_layer): ours {ha} buildah's {hb}")
    if len(ours["rootfs"]["diff_ids"]) != len(theirs["rootfs"]["diff_ids"]):
        problems.append(f"layers: ours {len(ours['rootfs']['diff_ids'])} buildah's "
                        f"{len(theirs['rootfs']['diff_ids'])}")
    return problems


def build(store: str, ctx: str, tag: str, *extra, timeout=600) -> subprocess.CompletedProcess:
    return kit.runner("build", "--storage", store, "-t", tag, *extra, ctx, timeout=timeout)


def write(ctx: str, files: dict) -> str:
    os.makedirs(ctx, exist_ok=True)
    for name, content in files.items():
        p = os.path.join(ctx, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
    return ctx
