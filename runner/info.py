"""Verbs that only tell: --version, spec, features."""
from __future__ import annotations

import os
import sys

from libcontainer import jsonio
from libcontainer.errors import InvalidArgument

from .args import Flag, bundle_dir, flag_help, parse, positional_id

SPEC_FLAGS = [
    Flag("--bundle,-b", "bundle", True, "", "where to write config.json"),
    Flag("--rootless", "rootless", help="a config for an unprivileged user (user namespace)"),
    Flag("--seccomp", "seccomp", True, "", "'default': add the default seccomp profile"),
    Flag("--help,-h", "help"),
]


def version() -> int:
    import libcontainer
    from libcontainer import shim

    sys.stdout.write(f"runner version {libcontainer.__version__}\n"
                     f"spec: {libcontainer.OCI_VERSION}\n"
                     f"libseccomp: {shim.seccomp_version()}\n")
    return 0


def cmd_spec(ctx, argv: list) -> int:
    from libcontainer.default_spec import default_config

    opts, pos = parse(argv, SPEC_FLAGS)
    if opts["help"]:
        return flag_help("spec", SPEC_FLAGS)
    if pos:
        raise InvalidArgument(f"spec: unexpected argument {pos[0]!r}")
    if opts["seccomp"] not in ("", "default"):
        raise InvalidArgument(f"--seccomp: unknown profile {opts['seccomp']!r} (want default)")
    maps, warnings = {}, []
    if opts["rootless"]:
        import pwd

        from libcontainer.subids import rootless_maps

        uid, gid = os.geteuid(), os.getegid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        maps["uid_mappings"], maps["gid_mappings"], warnings = rootless_maps(uid, gid, name)
    config = default_config(rootless=opts["rootless"], **maps)
    if opts["seccomp"]:
        from libcontainer.security.seccomp_default import default_profile

        caps = config["process"]["capabilities"]["bounding"]
        config["linux"]["seccomp"] = default_profile(caps)
    path = os.path.join(bundle_dir(opts["bundle"]), "config.json")
    if os.path.exists(path):
        raise InvalidArgument(f"spec: {path} already exists; remove it first")
    try:
        with open(path, "x") as f:
            f.write(jsonio.dumps(config, indent=2) + "\n")
    except OSError as e:
        raise InvalidArgument(f"--bundle: cannot write {path}: {e.strerror}") from None
    for w in warnings:
        ctx.warn(w)
    return 0


def cmd_features(ctx, argv: list) -> int:
    from libcontainer.features import features

    sys.stdout.write(jsonio.dumps(features(), indent=2) + "\n")
    return 0


def _format_flag(opts) -> str:
    fmt = opts["format"]
    if fmt not in ("table", "json"):
        raise InvalidArgument(f"--format: unknown format {fmt!r} (want table or json)")
    return fmt


def cmd_state(ctx, argv: list) -> int:
    from libcontainer import container as lc


    c = lc.load(positional_id(argv, "state"), ctx.root)
    sys.stdout.write(jsonio.dumps(c.state(), indent=2) + "\n")
    return 0


LIST_FLAGS = [Flag("--format,-f", "format", True, "table", "table or json"),
              Flag("--quiet,-q", "quiet", help="only IDs"), Flag("--help,-h", "help")]


def cmd_list(ctx, argv: list) -> int:
    from libcontainer.listing import iter_states
    from libcontainer.state import default_root

    opts, _ = parse(argv, LIST_FLAGS)
    if opts["help"]:
        return flag_help("list", LIST_FLAGS)
    fmt = _format_flag(opts)
    names: dict = {}  # owner uid → name, asked of the user database once each
    states = list(iter_states(ctx.root or default_root(), names))
    if opts["quiet"]:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif fmt == "json":
        sys.stdout.write(jsonio.dumps(states) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                 for s in states]
        # each column as wide as its widest value, three spaces apart (runc's tabwriter);
        # one format string for every row, not a join of six ljusts per row
        line = "   ".join(f"{{:<{max(map(len, col))}}}" for col in zip(*rows))
        sys.stdout.write("".join(line.format(*r).rstrip() + "\n" for r in rows))
    return 0


PS_FLAGS = [Flag("--format,-f", "format", True, "table", "table or json"), Flag("--help,-h", "help")]


def cmd_ps(ctx, argv: list) -> int:
    """runc's `ps ID [ps options]`: the table is ps(1)'s own (`-ef` unless options are
    given), keeping the header and the container's processes; json is the pid list."""
    from libcontainer import container as lc
    from libcontainer.errors import InvalidArgument


    opts, pos = parse(argv, PS_FLAGS, stop_at_positional=True)
    if opts["help"]:
        return flag_help("ps ID [ps options]", PS_FLAGS)
    fmt = _format_flag(opts)
    if fmt == "json" and len(pos) > 1:
        raise InvalidArgument("ps: options for ps(1) make no sense with --format json")
    pids = lc.load(positional_id(pos[:1], "ps"), ctx.root).processes()
    if fmt == "json":
        sys.stdout.write(jsonio.dumps(pids) + "\n")
        return 0
    ps_args = pos[1:] or ["-ef"]
    import subprocess

    try:
        r = subprocess.run(["ps", *ps_args], capture_output=True, text=True)
    except FileNotFoundError:
        if pos[1:]:
            raise InvalidArgument("ps: options were given but ps(1) is not installed") from None
        _own_table(pids)
        return 0
    if r.returncode != 0:
        raise InvalidArgument(f"ps {' '.join(ps_args)}: {(r.stderr or r.stdout).strip()}")
    lines = r.stdout.splitlines()
    header = lines[0].split() if lines else []
    if "PID" not in header:
        raise InvalidArgument(f"ps {' '.join(ps_args)}: couldn't find PID field in ps output")
    col = header.index("PID")
    wanted = set(pids)
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            out.append(line)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _own_table(pids: list) -> None:
    """The table without ps(1): uid, pid, ppid and command line from /proc."""
    sys.stdout.write(f"{'UID':<8} {'PID':>8} {'PPID':>8} CMD\n")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        uid = fields["Uid"].split()[0]
        sys.stdout.write(f"{uid:<8} {pid:>8} {fields['PPid'].strip():>8} {cmd or fields['Name'].strip()}\n")
