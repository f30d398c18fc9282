"""Image verbs: pull, images, rmi, bundle. Flags only; the work is libcontainer.images."""
from __future__ import annotations

import sys
import time

from libcontainer.errors import InvalidArgument

from .args import Flag, flag_help, parse

STORAGE = Flag("--storage", "storage", True, "", "the image store (default /var/lib/runner, "
               "or the user's data dir without root)")
HELP = Flag("--help,-h", "help")
TLS = Flag("--tls-verify", "tls_verify", True, "true", "false: accept any certificate, or plain HTTP")

PULL_FLAGS = [
    STORAGE,
    Flag("--name", "name", True, "", "store the image under this name"),
    TLS,
    Flag("--creds", "creds", True, "", "USER[:PASSWORD] for the registry"),
    Flag("--quiet,-q", "quiet", help="no progress; print only the image id"),
    HELP,
]


def _bool(value, flag: str) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"{flag}: want true or false, got {value!r}")


def cmd_pull(ctx, argv: list) -> int:
    from libcontainer import images
    from libcontainer.images import progress

    opts, pos = parse(argv, PULL_FLAGS)
    if opts["help"]:
        return flag_help("pull [flags] SOURCE", PULL_FLAGS)
    if len(pos) != 1:
        raise InvalidArgument("pull: expects one source (docker://…, oci:DIR[:TAG], docker-archive:FILE)")
    img = images.pull(pos[0], storage=opts["storage"] or None, name=opts["name"],
                      tls_verify=_bool(opts["tls_verify"], "--tls-verify"), creds=opts["creds"],
                      progress=progress.choose(opts["quiet"]))
    sys.stdout.write(img.id + "\n")
    return 0


IMAGES_FLAGS = [STORAGE, Flag("--format,-f", "format", True, "table", "table or json"),
                Flag("--quiet,-q", "quiet", help="only image ids"), HELP]


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return ""


def cmd_images(ctx, argv: list) -> int:
    from libcontainer import jsonio
    from libcontainer.images import list_images

    opts, pos = parse(argv, IMAGES_FLAGS)
    if opts["help"]:
        return flag_help("images", IMAGES_FLAGS)
    if pos:
        raise InvalidArgument(f"images: unexpected argument {pos[0]!r}")
    if opts["format"] not in ("table", "json"):
        raise InvalidArgument(f"--format: unknown format {opts['format']!r} (want table or json)")
    imgs = list_images(opts["storage"] or None)
    if opts["quiet"]:
        sys.stdout.write("".join(i.id[:12] + "\n" for i in imgs))
    elif opts["format"] == "json":
        sys.stdout.write(jsonio.dumps([i.to_json() for i in imgs], indent=2) + "\n")
    else:
        rows = [("NAME", "IMAGE ID", "LAYERS", "SIZE", "PULLED")]
        for i in imgs:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(i.pulled))
            for n in i.names or ["<none>"]:
                rows.append((n, i.id[:12], str(len(i.layers)), _size(i.size), when))
        widths = [max(len(r[k]) for r in rows) for k in range(5)]
        for r in rows:
            sys.stdout.write("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    return 0


RMI_FLAGS = [STORAGE, Flag("--force,-f", "force", help="even if a bundle uses it"),
             Flag("--prune", "prune", help="only collect unreferenced layers and blobs"), HELP]


def cmd_rmi(ctx, argv: list) -> int:
    from libcontainer.images import gc, rmi

    opts, pos = parse(argv, RMI_FLAGS)
    if opts["help"]:
        return flag_help("rmi [flags] IMAGE…", RMI_FLAGS)
    if opts["prune"]:
        if pos:
            raise InvalidArgument("rmi --prune takes no image")
        for line in gc(opts["storage"] or None):
            sys.stdout.write(f"Deleted: {line}\n")
        return 0
    if not pos:
        raise InvalidArgument("rmi: expects at least one image")
    for ref in pos:
        for line in rmi(ref, storage=opts["storage"] or None, force=opts["force"]):
            sys.stdout.write(line + "\n")
    return 0


BUNDLE_FLAGS = [
    STORAGE,
    Flag("--driver", "driver", True, "auto", "overlay, vfs (a copy) or auto"),
    Flag("--entrypoint", "entrypoint", True, None, "replace the image's Entrypoint (a command, no args)"),
    Flag("--env,-e", "env", True, multiple=True, help="KEY=VALUE, on top of the image's Env"),
    Flag("--user,-u", "user", True, None, "USER[:GROUP], names from the image's /etc/passwd"),
    Flag("--cwd,-w", "cwd", True, None, "replace the image's WorkingDir"),
    Flag("--tty,-t", "tty", help="process.terminal: true"),
    Flag("--remove", "remove", help="tear down the bundle DIR (unmount, delete)"),
    HELP,
]


def cmd_bundle(ctx, argv: list) -> int:
    from libcontainer import images

    # flags come before IMAGE: what follows DIR is the command, flags and all
    opts, pos = parse(argv, BUNDLE_FLAGS, stop_at_positional=True)
    if opts["help"]:
        return flag_help("bundle [flags] IMAGE DIR [COMMAND…]  |  bundle --remove DIR", BUNDLE_FLAGS)
    storage = opts["storage"] or None
    if opts["remove"]:
        if len(pos) != 1:
            raise InvalidArgument("bundle --remove: expects one bundle directory")
        images.remove_bundle(pos[0], storage=storage)
        return 0
    if len(pos) < 2:
        raise InvalidArgument("bundle: expects IMAGE DIR [COMMAND…]")
    images.bundle(pos[0], pos[1], storage=storage, driver=opts["driver"],
                  args=pos[2:] or None,
                  entrypoint=(None if opts["entrypoint"] is None
                              else [opts["entrypoint"]] if opts["entrypoint"] else []),
                  env=opts["env"], user=opts["user"], cwd=opts["cwd"], terminal=bool(opts["tty"]))
    return 0


def image_bundle(ctx, opts: dict, cid: str) -> str:
    """`run --image IMAGE ID`: a bundle for ID made in the store from IMAGE, with a poststop
    hook that removes it, so that deleting the container (run's own, or `runner delete`)
    tears the rootfs down."""
    from libcontainer import images
    from libcontainer.errors import AlreadyExists
    from libcontainer.state import StateDir, check_id

    if opts["bundle"]:
        raise InvalidArgument("run: --image and --bundle exclude each other")
    check_id(cid)
    if StateDir(ctx.root, cid).exists():
        raise AlreadyExists(f"container {cid!r} already exists")
    store = images.Store(opts["storage"] or None)
    bundle = store.path("bundles", cid)
    remove = [sys.executable, "-m", "runner", "bundle", "--storage", store.root, "--remove", bundle]
    images.bundle(opts["image"], bundle, storage=store.root,
                  hooks={"poststop": [{"path": sys.executable, "args": remove}]})
    return bundle
