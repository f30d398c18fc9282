"""`runner sandbox`: one untrusted command in an image or a rootfs directory, with limits,
and what happened in isolate's terms. Flags only; the work is libcontainer.sandbox."""
from __future__ import annotations

import os
import sys

from libcontainer.errors import ContainerError, InvalidArgument

from .args import Flag, flag_help, parse

FLAGS = [
    Flag("--time,-t", "time", True, "", "CPU time limit, seconds, of all the run's processes "
         "(default 5)"),
    Flag("--wall,-w", "wall", True, "", "wall clock limit, seconds (default 2 x time + 1)"),
    Flag("--memory,-m", "memory", True, "", "memory limit, e.g. 128m (default 256m; swap off)"),
    Flag("--pids,-p", "pids", True, "", "processes and threads at once (default 128)"),
    Flag("--output", "output", True, "", "bytes of stdout and of stderr kept (default 1m)"),
    Flag("--disk", "disk", True, "", "size of the writable layer and of /tmp (default 64m)"),
    Flag("--open-files", "open_files", True, "", "RLIMIT_NOFILE (default 256)"),
    Flag("--user,-u", "user", True, "", "uid[:gid] or a user of the image (default: the "
         "image's if not root, else nobody)"),
    Flag("--workdir", "workdir", True, "/box", "where the files go and the command runs"),
    Flag("--read-only", "readonly", help="the root filesystem read-only (/tmp and the "
         "workdir stay writable; always, unprivileged)"),
    Flag("--env,-e", "env", True, multiple=True, help="KEY=VALUE for the command"),
    Flag("--file,-f", "file", True, multiple=True, help="NAME=HOSTPATH: a file put in the "
         "workdir"),
    Flag("--stdin,-i", "stdin", True, "", "a file fed to the command's stdin ('-': ours); "
         "default empty"),
    Flag("--json", "json", help="print the result as JSON (with stdout and stderr) instead of "
         "passing the output through"),
    Flag("--meta,-M", "meta", True, "", "write isolate's meta file (key:value lines) here"),
    Flag("--storage", "storage", True, "", "the image store (default /var/lib/runner)"),
    Flag("--network", "network", True, "", "a network (runner network create) for the "
         "command; default: lo alone"),
    Flag("--rlimits-only", "rlimits_only", help="unprivileged without a delegated cgroup: "
         "accept per-process rlimits for --time, --memory and --pids"),
    Flag("--help,-h", "help"),
]

USAGE = "sandbox [flags] IMAGE|ROOTFS-DIR -- CMD [ARG...]"


def _number(value: str, flag: str, kind=float):
    try:
        return kind(value)
    except ValueError:
        raise InvalidArgument(f"{flag}: {value!r} is not a number") from None


def _limits(opts):
    from libcontainer.sandbox import Limits

    kw = {}
    if opts["time"]:
        kw["cpu_time"] = _number(opts["time"], "--time")
    if opts["wall"]:
        kw["wall_time"] = _number(opts["wall"], "--wall")
    if opts["memory"]:
        kw["memory"] = opts["memory"]
    if opts["pids"]:
        kw["pids"] = _number(opts["pids"], "--pids", int)
    if opts["output"]:
        kw["output"] = opts["output"]
    if opts["disk"]:
        kw["disk"] = opts["disk"]
    if opts["open_files"]:
        kw["open_files"] = _number(opts["open_files"], "--open-files", int)
    return Limits(**kw)


def cmd_sandbox(ctx, argv: list) -> int:
    opts, pos = parse(argv, FLAGS, stop_at_positional=True)
    if opts["help"]:
        return flag_help(USAGE, FLAGS)
    if pos and pos[0] == "--":
        pos = pos[1:]
    if len(pos) < 2:
        raise InvalidArgument(f"sandbox: expects an image or a rootfs directory and a command "
                              f"(usage: runner {USAGE})")
    image, cmd = pos[0], pos[1:]
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise InvalidArgument("sandbox: no command after the image")
    limits = _limits(opts)
    env = {}
    for item in opts["env"]:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise InvalidArgument(f"--env: {item!r} is not KEY=VALUE")
        env[k] = v
    files = {}
    for item in opts["file"]:
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            raise InvalidArgument(f"--file: {item!r} is not NAME=HOSTPATH")
        try:
            with open(path, "rb") as f:
                files[name] = f.read()
        except OSError as e:
            raise InvalidArgument(f"--file: cannot read {path}: {e.strerror}") from None
    stdin = b""
    if opts["stdin"] == "-":
        stdin = sys.stdin.buffer.read()
    elif opts["stdin"]:
        try:
            with open(opts["stdin"], "rb") as f:
                stdin = f.read()
        except OSError as e:
            raise InvalidArgument(f"--stdin: cannot read {opts['stdin']}: {e.strerror}") from None
    from libcontainer import sandbox
    from libcontainer.userns import rootless

    # unprivileged, the root is the image read-only in any case (no overlay can be mounted)
    with sandbox.Sandbox(image, limits, user=opts["user"] or None,
                         readonly_root=opts["readonly"] or rootless(), workdir=opts["workdir"],
                         storage=opts["storage"] or None, network=opts["network"] or False,
                         rlimits_only=opts["rlimits_only"]) as box:
        try:
            r = box.run(cmd, files=files, stdin=stdin, env=env)
        except InvalidArgument:
            raise
        except ContainerError as e:
            # the sandbox itself failed, not the command (isolate's XX): told as a result,
            # so that a script reading --json or the meta file sees it, exit status 2
            r = sandbox.Result(status=sandbox.INTERNAL_ERROR,
                               message=f"the sandbox failed: {e}")
    if opts["meta"]:
        _write_meta(opts["meta"], r)
    if opts["json"]:
        from libcontainer import jsonio

        sys.stdout.write(jsonio.dumps(r.to_json(), indent=2) + "\n")
    else:
        sys.stdout.flush()
        os.write(1, r.stdout) if r.stdout else None
        os.write(2, r.stderr) if r.stderr else None
        summary = "OK" if r.ok else r.message
        sys.stderr.write(f"{summary} ({r.cpu_time:.3f} sec real, {r.duration:.3f} sec wall)\n")
    # isolate's exit status: 0 the program ran fine, 1 it did not (TO, SG, RE, ML), 2 the
    # sandbox failed (XX)
    if r.status == sandbox.INTERNAL_ERROR:
        return 2
    return 0 if r.ok else 1


def _write_meta(path: str, r) -> None:
    lines = "".join(f"{k}:{v}\n" for k, v in r.meta().items())
    try:
        with open(path, "w") as f:
            f.write(lines)
    except OSError as e:
        raise InvalidArgument(f"--meta: cannot write {path}: {e.strerror}") from None
