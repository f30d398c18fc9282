"""Test images for the image tests, made by real tools: umoci builds a multi-layer image
from the busybox rootfs (whiteouts, an opaque dir, hard links, symlinks, owners, a device, an
image config), skopeo copies it to a docker archive and into docker-registry (the
distribution registry) serving on 127.0.0.1. Plus a writer of OCI layouts with crafted
(hostile) layers, and a tree snapshot to compare an unpacked rootfs with umoci's."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import time
import urllib.request

from hostpaths import HostPaths

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOTFS = os.path.join(REPO, "build", "bundle", "rootfs")
RUNNER = [sys.executable, "-m", "runner"]


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}): {r.stderr}{r.stdout}")
    return r


CONTAINERS_DIR = "/var/lib/containers"
# what the containers/ tools (skopeo, buildah) make on the host whatever their --root says:
# skopeo's blob-info cache, buildah's network run dir (/run/containers/networks)
HOST_DIRS = (CONTAINERS_DIR, "/run/containers")


def host_dirs_removed() -> HostPaths:
    """Those of HOST_DIRS a tool makes inside the `with` block are removed after it."""
    return HostPaths(list(HOST_DIRS))


def skopeo(*args) -> subprocess.CompletedProcess:
    with host_dirs_removed():
        return sh("skopeo", *args)


def runner(*args, timeout=120, input=None) -> subprocess.CompletedProcess:
    return subprocess.run(RUNNER + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, input=input)


def _tar(entries: list) -> bytes:
    """entries: (name, kind, extra) — kind file/dir/symlink/hardlink/char/whiteout…"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            name, kind = e[0], e[1]
            opts = e[2] if len(e) > 2 else {}
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = opts.get("mode", 0o755 if kind == "dir" else 0o644)
            ti.uid, ti.gid = opts.get("uid", 0), opts.get("gid", 0)
            if "pax" in opts:
                ti.pax_headers = opts["pax"]
            data = None
            if kind == "file":
                raw = opts.get("data", b"")
                ti.size = len(raw)
                data = io.BytesIO(raw)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, opts["target"]
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, opts["target"]
            elif kind == "char":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, opts.get("major", 1), opts.get("minor", 3)
            t.addfile(ti, data)
    return buf.getvalue()


def layer_tar(entries: list) -> bytes:
    return _tar(entries)


def image_workdir(tmp_path_factory, name: str) -> str:
    """A module's work dir (readable by a container's users) for images made from the busybox
    rootfs; skips when that rootfs was not made."""
    import pytest

    if not os.path.exists(os.path.join(ROOTFS, "bin", "busybox")):
        pytest.skip("no busybox rootfs: run `make rootfs`")
    work = str(tmp_path_factory.mktemp(name))
    os.chmod(work, 0o755)
    return work


def add_app_user(r: str) -> None:
    """User app (1234) in group staff (50), with its home, in the rootfs r."""
    with open(f"{r}/etc/passwd", "a") as f:
        f.write("app:x:1234:1234:app user:/home/app:/bin/sh\n")
    with open(f"{r}/etc/group", "a") as f:
        f.write("app:x:1234:\nstaff:x:50:app\n")
    os.makedirs(f"{r}/home/app", mode=0o750)
    os.chown(f"{r}/home/app", 1234, 1234)


def unmount_left(tmp: str) -> list:
    """Mounts left under tmp (a test's tmp dir), lazily unmounted here; → their paths."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(tmp) in line.split()[4]]
    for m in reversed(mounts):
        subprocess.run(["umount", "-l", m])
    return mounts


def build_image(work: str) -> dict:
    """The OCI layout `work/layout` with tags `base` (1 layer) and `full` (3 layers)."""
    layout = os.path.join(work, "layout")
    b = os.path.join(work, "umoci-bundle")
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:full")
    sh("umoci", "unpack", "--image", f"{layout}:full", b)
    r = os.path.join(b, "rootfs")
    sh("cp", "-a", ROOTFS + "/.", r)
    # layer 1: busybox + users, owners, links, a fifo, a device, a read-only dir
    add_app_user(r)
    for d in ("srv/data/sub", "opt/old", "srv/ro-dir"):
        os.makedirs(f"{r}/{d}")
    files = {"srv/data/keep.txt": "v1\n", "srv/data/gone.txt": "gone\n",
             "srv/data/sub/deep.txt": "deep\n", "opt/old/a": "a\n", "opt/old/b": "b\n",
             "srv/hl1": "linked\n", "srv/owned": "owned\n", "srv/suid": "#!/bin/sh\n",
             "srv/ro-dir/inside": "inside\n", "srv/big": "x" * 300000}
    for p, text in files.items():
        with open(f"{r}/{p}", "w") as f:
            f.write(text)
    os.link(f"{r}/srv/hl1", f"{r}/srv/hl2")
    os.symlink("data/keep.txt", f"{r}/srv/link")
    os.symlink("/etc/passwd", f"{r}/srv/abs")
    os.chown(f"{r}/srv/owned", 1234, 50)
    os.chmod(f"{r}/srv/owned", 0o640)
    os.chmod(f"{r}/srv/suid", 0o4755)
    os.mkfifo(f"{r}/srv/fifo")
    os.makedirs(f"{r}/srv/dev")
    os.mknod(f"{r}/srv/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(f"{r}/srv/ro-dir", 0o555)
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:full", b)
    sh("umoci", "tag", "--image", f"{layout}:full", "base")
    # layer 2: deletions (whiteouts), a replaced dir, changed content and modes, new links
    os.unlink(f"{r}/srv/data/gone.txt")
    shutil.rmtree(f"{r}/opt/old")
    os.makedirs(f"{r}/opt/old")
    with open(f"{r}/opt/old/c", "w") as f:
        f.write("c\n")
    with open(f"{r}/srv/data/keep.txt", "w") as f:
        f.write("v2\n")
    os.unlink(f"{r}/bin/vi")
    with open(f"{r}/srv/h2a", "w") as f:
        f.write("second pair\n")
    os.link(f"{r}/srv/h2a", f"{r}/srv/h2b")
    os.chmod(f"{r}/srv/hl1", 0o600)
    os.unlink(f"{r}/srv/link")
    os.makedirs(f"{r}/srv/link")  # a symlink becomes a directory
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:full", b)
    # layer 3, crafted: an opaque directory (umoci's repack never writes one)
    l3 = os.path.join(work, "layer3.tar")
    with open(l3, "wb") as f:
        f.write(layer_tar([("srv/", "dir"), ("srv/data/", "dir"),
                           ("srv/data/.wh..wh..opq", "file"),
                           ("srv/data/new.txt", "file", {"data": b"new\n", "mode": 0o664})]))
    sh("umoci", "raw", "add-layer", "--image", f"{layout}:full", l3)
    sh("umoci", "config", "--image", f"{layout}:full",
       "--config.entrypoint", "/bin/echo", "--config.entrypoint", "ep",
       "--config.cmd", "hello", "--config.cmd", "world",
       "--config.env", "FOO=bar baz", "--config.env", "PATH=/usr/bin:/bin:/opt/bin",
       "--config.workingdir", "/srv", "--config.user", "app",
       "--config.label", "org.example.a=1", "--config.label", "colour=blue",
       "--config.stopsignal", "SIGUSR1", "--config.exposedports", "8080/tcp")
    shutil.rmtree(b)
    return {"layout": layout, "work": work}


def umoci_unpack(layout: str, tag: str, dest: str) -> str:
    sh("umoci", "unpack", "--image", f"{layout}:{tag}", dest)
    return os.path.join(dest, "rootfs")


def tree(root: str) -> dict:
    """path → (type, mode, uid, gid, size, content sha256 | link target | rdev, link group)."""
    out = {}
    inodes: dict = {}
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(dirs + files) + ([""] if base == root else []):
            p = os.path.join(base, n) if n else base
            st = os.lstat(p)
            rel = "/" + os.path.relpath(p, root) if n else "/"
            rel = rel.replace("/./", "/")
            kind = stat.S_IFMT(st.st_mode)
            extra = ""
            if stat.S_ISREG(kind):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()[:16]
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(kind):
                extra = os.readlink(p)
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                extra = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            size = st.st_size if not stat.S_ISDIR(kind) else 0
            out[rel] = [stat.filemode(st.st_mode), st.st_uid, st.st_gid, size, extra, st.st_ino]
    # hard links: each regular file gets the sorted list of its names
    for rel, v in out.items():
        names = inodes.get(v[5], [rel]) if v[0].startswith("-") else [rel]
        v[5] = ",".join(sorted(names))
    return {k: tuple(v) for k, v in out.items()}


def diff_trees(a: dict, b: dict) -> list:
    problems = [f"only in ours: {p}" for p in sorted(set(a) - set(b))]
    problems += [f"only in umoci's: {p}" for p in sorted(set(b) - set(a))]
    problems += [f"{p}: ours {a[p]} umoci's {b[p]}" for p in sorted(set(a) & set(b)) if a[p] != b[p]]
    return problems


# ---- OCI layouts written by hand (for crafted layers) -------------------------------------

def write_layout(layout: str, tag: str, layers: list, config: dict | None = None,
                 gzip_layers: bool = False) -> dict:
    """An OCI layout whose image has these layer tars (bytes). → digests."""
    import gzip

    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, h), "wb") as f:
            f.write(data)
        return "sha256:" + h

    descs, diff_ids = [], []
    for tar in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        blob = gzip.compress(tar) if gzip_layers else tar
        mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        descs.append({"mediaType": mt, "digest": put(blob), "size": len(blob)})
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cfg.update(config or {})
    cbytes = json.dumps(cfg).encode()
    cdesc = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cbytes),
             "size": len(cbytes)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": cdesc, "layers": descs}).encode()
    mdigest = put(manifest)
    index_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": mdigest, "size": len(manifest),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(index_path, "w") as f:
        json.dump(index, f)
    return {"manifest": mdigest, "layers": [d["digest"] for d in descs], "config": cdesc["digest"]}


# ---- docker-registry on loopback -----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """`docker-registry serve` on 127.0.0.1:PORT with storage in `work`; `htpasswd` turns on
    basic auth; `token` = (realm, service, issuer, cert file) turns on bearer tokens."""

    def __init__(self, work: str, htpasswd: str = "", token: tuple = (), port: int = 0):
        self.dir = work
        os.makedirs(work, exist_ok=True)
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        auth = ""
        if htpasswd:
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
        elif token:
            realm, service, issuer, cert = token
            auth = (f"auth:\n  token:\n    realm: {realm}\n    service: {service}\n"
                    f"    issuer: {issuer}\n    rootcertbundle: {cert}\n")
        conf = os.path.join(work, "config.yml")
        with open(conf, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {work}/data\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: {self.addr}\n{auth}")
        self.log = open(os.path.join(work, "registry.log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401: up, with auth
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    with open(os.path.join(work, "registry.log")) as f:
                        raise AssertionError(f"docker-registry did not start: {f.read()}")
                time.sleep(0.05)

    def push(self, src: str, name: str, *extra: str) -> None:
        skopeo("copy", "--quiet", "--dest-tls-verify=false", *extra, src,
           f"docker://{self.addr}/{name}")

    def blob_file(self, digest: str) -> str:
        h = digest[7:]
        return os.path.join(self.dir, "data", "docker", "registry", "v2", "blobs", "sha256",
                            h[:2], h, "data")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def store_leftovers(store: str) -> list:
    """What a failed pull left in the store: layers, blobs, temporary files, images."""
    found = []
    for sub in ("layers", "blobs/sha256", "tmp", "containers", "mounts"):
        d = os.path.join(store, sub)
        if os.path.isdir(d):
            found += [f"{sub}/{n}" for n in os.listdir(d) if not n.startswith(".")]
    p = os.path.join(store, "images.json")
    if os.path.exists(p):
        with open(p) as f:
            if json.load(f).get("images"):
                found.append("images.json entries")
    return found


# ---- a token server for docker-registry's bearer auth (loopback, in the test process) --------

class TokenServer:
    """Issues the JWTs docker-registry's `auth: token` verifies: RS256, signed with openssl by
    a key whose self-signed certificate is the registry's rootcertbundle and rides in the
    token's x5c header. Basic credentials USER:PASSWORD get pull+push on the scope asked
    for; anonymous requests get a token with no access; wrong credentials a 401."""

    def __init__(self, work: str, user: str, password: str):
        import base64
        import http.server
        import threading
        import urllib.parse

        self.key = os.path.join(work, "token.key")
        self.cert = os.path.join(work, "token.crt")
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
           "-out", self.cert, "-days", "1", "-subj", "/CN=test-token-issuer")
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             capture_output=True, check=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.service, self.issuer = "test-registry", "test-issuer"
        self.requests: list = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                pairs = urllib.parse.parse_qsl(u.query)
                q = dict(pairs)
                # several scope parameters (docker's way): one space-separated string here
                q["scope"] = " ".join(v for k, v in pairs if k == "scope")
                auth = self.headers.get("Authorization", "")
                who = ""
                if auth.startswith("Basic "):
                    who = base64.b64decode(auth[6:]).decode()
                    if who != f"{user}:{password}":
                        server.requests.append(("denied", q.get("scope", "")))
                        self.send_response(401)
                        self.end_headers()
                        return
                server.requests.append((who.split(":")[0] or "anonymous", q.get("scope", "")))
                token = server.token(q.get("scope", ""), bool(who))
                body = json.dumps({"token": token, "access_token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def token(self, scope: str, granted: bool) -> str:
        import base64
        import uuid

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        access = []
        if granted and scope:
            for s in scope.split(" "):
                kind, _, rest = s.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "tester" if granted else "", "aud": self.service,
                  "exp": now + 600, "nbf": now - 60, "iat": now, "jti": uuid.uuid4().hex,
                  "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing.encode(),
                             capture_output=True, check=True).stdout
        return f"{signing}.{b64(sig)}"

    def registry_auth(self) -> tuple:
        return (self.realm, self.service, self.issuer, self.cert)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
