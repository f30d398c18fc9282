"""Ship verbs: push, save, load, tag, login, logout, search. Flags only; the work is
libcontainer.images (push, archive, auth, catalog)."""
from __future__ import annotations

import os
import signal
import sys

from libcontainer.errors import InvalidArgument

from .args import Flag, flag_help, parse
from .images import HELP, STORAGE, TLS, _bool

CREDS = Flag("--creds", "creds", True, "", "USER[:PASSWORD] for the registry (else the auth file's)")
AUTHFILE = Flag("--authfile", "authfile", True, "", "the auth file (default: REGISTRY_AUTH_FILE, "
                "$XDG_RUNTIME_DIR/containers/auth.json)")
QUIET = Flag("--quiet,-q", "quiet", help="no progress")


def _interruptible() -> None:
    """SIGTERM as SIGINT: the push or save cleans up (cancels uploads, removes temp files)."""
    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


def _authfile(opts: dict) -> None:
    if opts.get("authfile"):
        os.environ["REGISTRY_AUTH_FILE"] = os.path.abspath(opts["authfile"])


PUSH_FLAGS = [STORAGE, TLS, CREDS, AUTHFILE, QUIET,
              Flag("--format,-f", "format", True, "", "manifest format: oci or v2s2 (default: "
                   "the image's own)"),
              Flag("--compression-format", "compression", True, "gzip", "gzip or zstd"),
              Flag("--chunk-size", "chunk", True, "", "bytes per PATCH for blobs larger than it "
                   "(default 32 MiB; smaller blobs go in one PUT)"),
              Flag("--digestfile", "digestfile", True, "", "write the manifest digest to this file"),
              HELP]


def cmd_push(ctx, argv: list) -> int:
    from libcontainer import images
    from libcontainer.images import progress

    opts, pos = parse(argv, PUSH_FLAGS)
    if opts["help"]:
        return flag_help("push [flags] IMAGE DESTINATION", PUSH_FLAGS)
    if len(pos) not in (1, 2):
        raise InvalidArgument("push: expects IMAGE [DESTINATION] (docker://HOST/NAME[:TAG], "
                              "oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE)")
    dest = pos[1] if len(pos) == 2 else pos[0]
    if not dest.startswith(("docker://", "oci:", "oci-archive:", "docker-archive:")) and \
            "://" not in dest:
        dest = "docker://" + dest  # HOST/NAME[:TAG], as podman push takes it
    chunk = 0
    if opts["chunk"]:
        try:
            chunk = int(opts["chunk"])
        except ValueError:
            raise InvalidArgument(f"--chunk-size: {opts['chunk']!r} is not a number of bytes") from None
    _authfile(opts)
    _interruptible()
    digest = images.push(pos[0], dest, storage=opts["storage"] or None,
                         tls_verify=_bool(opts["tls_verify"], "--tls-verify"), creds=opts["creds"],
                         format=opts["format"], compression=opts["compression"],
                         progress=progress.choose(opts["quiet"]), **({"chunk_size": chunk} if chunk else {}))
    if opts["digestfile"] and digest:
        with open(opts["digestfile"], "w") as f:
            f.write(digest)
    return 0


SAVE_FLAGS = [STORAGE, QUIET,
              Flag("--output,-o", "output", True, "", "the archive to write"),
              Flag("--format", "format", True, "docker-archive", "docker-archive or oci-archive"),
              Flag("--compression-format", "compression", True, "gzip",
                   "oci-archive's layers: gzip, zstd or none"),
              HELP]


def cmd_save(ctx, argv: list) -> int:
    from libcontainer import images
    from libcontainer.images import progress

    opts, pos = parse(argv, SAVE_FLAGS)
    if opts["help"]:
        return flag_help("save [flags] -o FILE IMAGE…", SAVE_FLAGS)
    if not pos:
        raise InvalidArgument("save: expects at least one image")
    if not opts["output"]:
        if sys.stdout.isatty():
            raise InvalidArgument("--output: name the archive (-o FILE); stdout is a terminal")
        raise InvalidArgument("--output: required (-o FILE)")
    _interruptible()
    images.save(pos, opts["output"], storage=opts["storage"] or None, format=opts["format"],
                compression=opts["compression"], progress=progress.choose(opts["quiet"]))
    return 0


LOAD_FLAGS = [STORAGE, QUIET, Flag("--input,-i", "input", True, "", "the archive to read"), HELP]


def cmd_load(ctx, argv: list) -> int:
    from libcontainer import images
    from libcontainer.images import progress

    opts, pos = parse(argv, LOAD_FLAGS)
    if opts["help"]:
        return flag_help("load [flags] -i FILE", LOAD_FLAGS)
    src = opts["input"] or (pos[0] if len(pos) == 1 else "")
    if not src or len(pos) > (0 if opts["input"] else 1):
        raise InvalidArgument("load: expects one archive (-i FILE)")
    _interruptible()
    for img, names in images.load(src, storage=opts["storage"] or None,
                                  progress=progress.choose(opts["quiet"])):
        for n in names or [f"sha256:{img.id}"]:
            sys.stdout.write(f"Loaded image: {n}\n")
    return 0


TAG_FLAGS = [STORAGE, HELP]


def cmd_tag(ctx, argv: list) -> int:
    from libcontainer import images

    opts, pos = parse(argv, TAG_FLAGS)
    if opts["help"]:
        return flag_help("tag [flags] IMAGE NAME…", TAG_FLAGS)
    if len(pos) < 2:
        raise InvalidArgument("tag: expects IMAGE NAME…")
    for name in pos[1:]:
        images.tag(pos[0], name, storage=opts["storage"] or None)
    return 0


LOGIN_FLAGS = [TLS, AUTHFILE,
               Flag("--username,-u", "username", True, "", "user name"),
               Flag("--password,-p", "password", True, None, "password (see --password-stdin)"),
               Flag("--password-stdin", "password_stdin", help="read the password from stdin"),
               Flag("--get-login", "get_login", help="print the user logged in to HOST"),
               HELP]


def cmd_login(ctx, argv: list) -> int:
    from libcontainer.images import auth

    opts, pos = parse(argv, LOGIN_FLAGS)
    if opts["help"]:
        return flag_help("login [flags] HOST[:PORT][/NAMESPACE]", LOGIN_FLAGS)
    if len(pos) != 1:
        raise InvalidArgument("login: expects one registry (HOST[:PORT])")
    _authfile(opts)
    key = pos[0].removeprefix("docker://").rstrip("/")
    host = key.split("/", 1)[0]
    if opts["get_login"]:
        creds = auth.lookup(host, key.partition("/")[2])
        if not creds:
            raise InvalidArgument(f"not logged into {key}")
        sys.stdout.write(creds.split(":", 1)[0] + "\n")
        return 0
    user, password = opts["username"], opts["password"]
    if opts["password_stdin"]:
        if password is not None:
            raise InvalidArgument("--password and --password-stdin exclude each other")
        password = sys.stdin.readline().rstrip("\n")
    if not user or password is None:
        if not sys.stdin.isatty():
            raise InvalidArgument("login: --username and --password(-stdin) are needed "
                                  "without a terminal")
        import getpass

        user = user or input("Username: ")
        password = getpass.getpass("Password: ") if password is None else password
    from libcontainer.images import catalog

    catalog.verify(host, f"{user}:{password}", tls_verify=_bool(opts["tls_verify"], "--tls-verify"))
    auth.store_creds(key, user, password)
    sys.stdout.write("Login Succeeded!\n")
    return 0


LOGOUT_FLAGS = [AUTHFILE, Flag("--all,-a", "all", help="forget every registry"), HELP]


def cmd_logout(ctx, argv: list) -> int:
    from libcontainer.images import auth

    opts, pos = parse(argv, LOGOUT_FLAGS)
    if opts["help"]:
        return flag_help("logout [flags] HOST", LOGOUT_FLAGS)
    _authfile(opts)
    if opts["all"]:
        if pos:
            raise InvalidArgument("logout --all takes no registry")
        auth.remove_creds(all_=True)
        sys.stdout.write("Removed login credentials for all registries\n")
        return 0
    if len(pos) != 1:
        raise InvalidArgument("logout: expects one registry (HOST[:PORT])")
    key = pos[0].removeprefix("docker://").rstrip("/")
    if not auth.remove_creds(key):
        raise InvalidArgument(f"not logged into {key}")
    sys.stdout.write(f"Removed login credentials for {key}\n")
    return 0


SEARCH_FLAGS = [TLS, CREDS, AUTHFILE,
                Flag("--list-tags", "list_tags", help="the tags of HOST/NAME"),
                Flag("--limit", "limit", True, "0", "at most this many results"),
                Flag("--format", "format", True, "table", "table or json"),
                HELP]


def cmd_search(ctx, argv: list) -> int:
    from libcontainer import jsonio
    from libcontainer.images import catalog

    opts, pos = parse(argv, SEARCH_FLAGS)
    if opts["help"]:
        return flag_help("search [flags] HOST/TERM  |  search --list-tags HOST/NAME", SEARCH_FLAGS)
    if len(pos) != 1:
        raise InvalidArgument("search: expects one HOST/TERM")
    if opts["format"] not in ("table", "json"):
        raise InvalidArgument(f"--format: unknown format {opts['format']!r} (want table or json)")
    try:
        limit = int(opts["limit"])
        if limit < 0:
            raise ValueError
    except ValueError:
        raise InvalidArgument(f"--limit: {opts['limit']!r} is not a count") from None
    _authfile(opts)
    tls = _bool(opts["tls_verify"], "--tls-verify")
    if opts["list_tags"]:
        name = pos[0].removeprefix("docker://")
        tags = catalog.list_tags(name, tls_verify=tls, creds=opts["creds"], limit=limit)
        host, _, path = name.partition("/")
        repo = f"{host}/{path.partition(':')[0]}"
        if opts["format"] == "json":
            sys.stdout.write(jsonio.dumps([{"Name": repo, "Tags": tags}], indent=2) + "\n")
        else:
            rows = [("NAME", "TAG")] + [(repo, t) for t in tags]
            _table(rows)
        return 0
    hits = catalog.search(pos[0].removeprefix("docker://"), tls_verify=tls, creds=opts["creds"],
                          limit=limit)
    if opts["format"] == "json":
        sys.stdout.write(jsonio.dumps([{"Index": h.split("/", 1)[0], "Name": h} for h in hits],
                                      indent=2) + "\n")
    else:
        _table([("NAME",)] + [(h,) for h in hits])
    return 0


def _table(rows: list) -> None:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
