"""An image → an OCI bundle: `rootfs/` from the graph driver, `config.json` from `runner
spec`'s defaults and the image config (the conversion the OCI image spec describes:
Entrypoint+Cmd, Env, WorkingDir, User through the image's own /etc/passwd and /etc/group,
Labels and StopSignal as annotations), with the caller's overrides on top."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time

from .. import jsonio
from ..default_spec import default_config
from . import driver as drivers
from .errors import ImageError, InvalidArgument
from .store import Store, write_atomic

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _key(bundle: str) -> str:
    return hashlib.sha256(bundle.encode()).hexdigest()[:24]


# ---- files of the image, read without leaving it ----------------------------------------

def read_in_root(root: str, path: str, limit: int = 1 << 20) -> bytes | None:
    """A file of the rootfs, its symlinks resolved inside the rootfs (an absolute target is
    taken from the rootfs, `..` stops at it), as the container would see it. None if absent."""
    todo = [p for p in path.split("/") if p]
    done: list = []
    links = 0
    while todo:
        comp = todo.pop(0)
        if comp == ".":
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        full = os.path.join(root, *done, comp)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                return None
            target = os.readlink(full)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
            continue
        done.append(comp)
    try:
        fd = os.open(os.path.join(root, *done), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _table(data: bytes | None, width: int) -> list:
    rows = []
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#"):
            f = line.split(":")
            if len(f) >= width:
                rows.append(f)
    return rows


def resolve_user(rootfs: str, spec: str) -> dict:
    """`user[:group]` (names or numbers) → {uid, gid, additionalGids?, home}, as Docker and
    podman resolve an image's User."""
    user, _, group = (spec or "").partition(":")
    passwd = _table(read_in_root(rootfs, "/etc/passwd"), 7)
    groups = _table(read_in_root(rootfs, "/etc/group"), 4)
    entry = None
    if user == "":
        uid = 0
    elif user.isdigit():
        uid = int(user)
        entry = next((p for p in passwd if p[2] == user), None)
    else:
        entry = next((p for p in passwd if p[0] == user), None)
        if entry is None:
            raise ImageError(f"user {user!r}: no such user in the image's /etc/passwd")
        uid = int(entry[2]) if entry[2].isdigit() else 0
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((g for g in groups if g[0] == group), None)
            if g is None:
                raise ImageError(f"group {group!r}: no such group in the image's /etc/group")
            gid = int(g[2])
    out = {"uid": uid, "gid": gid, "home": entry[5] if entry else "/"}
    name = entry[0] if entry else None
    if name and not group:
        extra = sorted({int(g[2]) for g in groups if g[2].isdigit() and g[2] != str(gid)
                        and name in g[3].split(",")})
        if extra:
            out["additionalGids"] = extra
    return out


# ---- the config -----------------------------------------------------------------------

def _set_env(env: list, item: str) -> None:
    key = item.partition("=")[0]
    for i, e in enumerate(env):
        if e.partition("=")[0] == key:
            env[i] = item
            return
    env.append(item)


def make_config(image_config: dict, rootfs: str, rootless: bool, args=None, entrypoint=None,
                env=(), user: str | None = None, cwd: str | None = None, terminal: bool = False) -> dict:
    ic = image_config.get("config") or {}
    config = default_config(rootless=rootless, terminal=terminal)
    proc = config["process"]
    ep = list(ic.get("Entrypoint") or []) if entrypoint is None else list(entrypoint)
    cmd = list(ic.get("Cmd") or []) if args is None and entrypoint is None else list(args or [])
    proc["args"] = ep + cmd
    if not proc["args"]:
        raise InvalidArgument("the image has no Entrypoint or Cmd: give a command")
    u = resolve_user(rootfs, user if user is not None else (ic.get("User") or ""))
    proc["user"] = {k: u[k] for k in ("uid", "gid", "additionalGids") if k in u}
    penv = [e for e in ic.get("Env") or [] if isinstance(e, str) and "=" in e]
    if not any(e.startswith("PATH=") for e in penv):
        penv.insert(0, DEFAULT_PATH)
    if terminal and not any(e.startswith("TERM=") for e in penv):
        penv.append("TERM=xterm")
    if not any(e.startswith("HOME=") for e in penv):
        penv.append(f"HOME={u['home'] or '/'}")
    for item in env:
        if "=" not in item:
            raise InvalidArgument(f"--env: {item!r} is not KEY=VALUE")
        _set_env(penv, item)
    proc["env"] = penv
    proc["cwd"] = cwd or ic.get("WorkingDir") or "/"
    if not proc["cwd"].startswith("/"):
        raise InvalidArgument(f"working directory {proc['cwd']!r} is not absolute")
    config["root"]["readonly"] = False
    ann = {}
    labels = ic.get("Labels") or {}
    if isinstance(labels, dict):
        ann.update({str(k): str(v) for k, v in labels.items()})
    if ic.get("StopSignal"):
        ann["org.opencontainers.image.stopSignal"] = str(ic["StopSignal"])
    if ic.get("ExposedPorts"):
        ann["org.opencontainers.image.exposedPorts"] = ",".join(sorted(ic["ExposedPorts"]))
    for key, ann_key in (("os", "org.opencontainers.image.os"),
                         ("architecture", "org.opencontainers.image.architecture"),
                         ("author", "org.opencontainers.image.author"),
                         ("created", "org.opencontainers.image.created")):
        if image_config.get(key):
            ann[ann_key] = str(image_config[key])
    if ann:
        config["annotations"] = ann
    return config


# ---- bundle create / remove ---------------------------------------------------------------

def create(image: str, bundle: str, storage: str | None = None, driver: str = "auto",
           args=None, entrypoint=None, env=(), user: str | None = None, cwd: str | None = None,
           terminal: bool = False, hooks: dict | None = None) -> dict:
    """Make `bundle` (config.json + rootfs) from an image in the store; → the config."""
    store = Store(storage)
    bundle = os.path.abspath(bundle)
    rootfs = os.path.join(bundle, "rootfs")
    key = _key(bundle)
    record_path = store.path("mounts", key + ".json")
    with store.shared():
        img = store.get(image)
        image_config = store.config(img)
        kind = drivers.choose(driver, store.rootless)
        layers = [store.layer_dir(d) for d in img.layers]
        for d, path in zip(img.layers, layers):
            if not os.path.isdir(path):
                raise ImageError(f"image {image!r}: layer {d} is missing from the store (pull again)")
        if os.path.exists(record_path):
            raise ImageError(f"{bundle} is already a bundle of image "
                             f"{_read(record_path).get('image', '?')[:12]}")
        if os.path.exists(os.path.join(bundle, "config.json")):
            raise InvalidArgument(f"{bundle}/config.json already exists")
        made_bundle = not os.path.exists(bundle)
        os.makedirs(bundle, exist_ok=True)
        try:
            os.mkdir(rootfs, 0o755)
        except FileExistsError:
            if os.listdir(rootfs):
                raise InvalidArgument(f"{rootfs} exists and is not empty") from None
        record = {"bundle": bundle, "image": img.id, "layers": img.layers, "driver": kind,
                  "created": time.time(), "made_bundle": made_bundle}
        # written before anything is mounted: a crash in between leaves what --remove needs
        write_atomic(record_path, json.dumps(record).encode())
        try:
            cdir = store.path("containers", key)
            os.makedirs(cdir, mode=0o700, exist_ok=True)
            top = layers[-1] if layers else None
            if kind == "overlay":
                upper, work = os.path.join(cdir, "upper"), os.path.join(cdir, "work")
                os.mkdir(upper, 0o755)
                os.mkdir(work, 0o700)
                lowers = list(reversed(layers))
                if not lowers:
                    lowers = [os.path.join(cdir, "empty")]
                    os.mkdir(lowers[0], 0o755)
                if top:
                    drivers.copy_root_attrs(top, upper, store.rootless)
                drivers.mount_overlay(lowers, upper, work, rootfs, store.rootless)
            else:
                for layer in layers:
                    drivers.apply_layer(layer, rootfs, store.rootless)
                if top:
                    drivers.copy_root_attrs(top, rootfs, store.rootless)
            config = make_config(image_config, rootfs, store.rootless, args=args,
                                 entrypoint=entrypoint, env=env, user=user, cwd=cwd,
                                 terminal=terminal)
            if hooks:
                config["hooks"] = hooks
            with open(os.path.join(bundle, "config.json"), "x") as f:
                f.write(jsonio.dumps(config, indent=2) + "\n")
        except BaseException:
            _teardown(store, record_path, record)
            raise
    return config


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return {}


def _teardown(store: Store, record_path: str, record: dict) -> None:
    bundle = record["bundle"]
    rootfs = os.path.join(bundle, "rootfs")
    if record.get("driver") == "overlay":
        drivers.unmount(rootfs)
    shutil.rmtree(store.path("containers", _key(bundle)), ignore_errors=True)
    if os.path.isdir(rootfs) and not os.path.ismount(rootfs):
        shutil.rmtree(rootfs)
    try:
        os.unlink(os.path.join(bundle, "config.json"))
    except FileNotFoundError:
        pass
    if record.get("made_bundle"):
        try:
            os.rmdir(bundle)
        except OSError:
            pass
    os.unlink(record_path)


def remove(bundle: str, storage: str | None = None) -> None:
    """Undo `create`: unmount or delete the rootfs, drop the upper dir, config.json and the
    bundle dir if `create` made it."""
    store = Store(storage)
    bundle = os.path.abspath(bundle)
    record_path = store.path("mounts", _key(bundle) + ".json")
    with store.shared():
        record = _read(record_path)
        if not record:
            raise ImageError(f"{bundle} is not a bundle made by 'runner bundle' with the store "
                             f"{store.root}")
        _teardown(store, record_path, record)
