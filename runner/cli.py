"""Global flags, dispatch to the verb modules, and the one place errors become exit codes."""
from __future__ import annotations

import sys

from libcontainer.errors import ContainerError, InvalidArgument

from .args import Flag, parse, usage

GLOBAL_FLAGS = [
    Flag("--root", "root", True, "", "state directory root (default /run/runner; unprivileged: "
         "$XDG_RUNTIME_DIR/runner, else /run/user/UID/runner or ~/.local/state/runner)"),
    Flag("--log", "log", True, "", "log file (errors are written there too)"),
    Flag("--log-format", "log_format", True, "text", "text or json"),
    Flag("--debug", "debug", help="more output"),
    Flag("--systemd-cgroup", "systemd_cgroup", help="cgroups through systemd: a transient scope "
         "per container; linux.cgroupsPath is \"slice:prefix:name\""),
    Flag("--rootless", "rootless", True, "auto", "true, false or auto (runc's flag; the "
         "runner always decides as auto does: rootless when not the host's root)"),
    Flag("--version,-v", "version", help="print the version"),
    Flag("--help,-h", "help", help="show help"),
]

VERBS = {
    "run": "lifecycle", "create": "lifecycle", "start": "lifecycle", "kill": "lifecycle",
    "delete": "lifecycle", "exec": "lifecycle", "pause": "lifecycle", "resume": "lifecycle",
    "state": "info", "list": "info", "ps": "info", "spec": "info", "features": "info",
    "update": "cgroup_verbs", "events": "cgroup_verbs",
    "network": "network",
    "pull": "images", "images": "images", "rmi": "images", "bundle": "images",
    "sandbox": "sandbox",
    "build": "build", "commit": "build",
    "push": "ship", "save": "ship", "load": "ship", "tag": "ship", "login": "ship",
    "logout": "ship", "search": "ship", "system": "system",
    "daemon": "daemon", "warm-server": "warm",
}

# Verbs that allocate a bounded amount and exit (run and exec may wait long, allocating
# nothing meanwhile): they run with the garbage collector off (see __main__). The others —
# events streams for ever, pull and network talk to the world — get it back.
BOUNDED_VERBS = {"run", "create", "start", "exec", "kill", "delete", "pause", "resume",
                 "state", "list", "ps", "spec", "features", "update"}

USAGE = """usage: runner [global flags] VERB [flags] [args]

verbs:
   create    set a container up; its process waits for start
   start     start a created container's process
   run       create + start (+ wait and delete unless --detach)
   exec      run another process in a running container
   kill      signal a container (--all: every process)
   delete    remove a stopped container (--force: any)
   pause     freeze a container's processes
   resume    thaw them
   update    change the resource limits of a running container
   events    stats and OOM events of a container (--stats: once)
   state     print a container's OCI state
   list      list containers
   ps        list a container's processes
   spec      write a default config.json into a bundle
   features  print the OCI features document
   network   network configurations for containers (create, ls, rm, inspect, hooks)
   pull      pull an image (docker://…, oci:DIR[:TAG], docker-archive:FILE) into the store
   images    list the images in the store
   rmi       remove an image (and the layers nothing else uses)
   bundle    make a bundle (config.json + overlay rootfs) from an image; --remove DIR
   sandbox   run an untrusted command in an image with limits; isolate-style result
   build     build an image from a Dockerfile (RUN in our own containers)
   commit    a container made from an image → a new image (its changes as a layer)
   push      push an image to docker://HOST/NAME[:TAG], oci:DIR[:TAG], oci-archive: or docker-archive:
   save      write images to a docker-archive or oci-archive file (-o FILE)
   load      load the images of a docker-archive or oci-archive file (-i FILE)
   tag       give an image another name
   login     log in to a registry (containers-auth.json, shared with podman/skopeo/docker)
   logout    forget a registry's credentials
   search    search a registry's repositories (HOST/TERM), or list tags (--list-tags)
   system    system prune: remove what the image store holds for nothing
   daemon    serve the Docker Engine API (docker CLI, docker-py, docker-compose)
   warm-server  serve start/state/kill/delete/... of this --root without an interpreter
             start-up per call (the installed launcher hands them over; see README)

global flags:
"""


class Context:
    """What every verb gets: the global options and the output streams."""

    def __init__(self, opts: dict):
        self._root = opts["root"]
        self.debug = opts["debug"]
        self.log = opts["log"]
        self.log_format = opts["log_format"]
        self.systemd_cgroup = opts["systemd_cgroup"]

    @property
    def root(self) -> str:
        """--root, else the default for this user (decided only by verbs that need it)."""
        if not self._root:
            from libcontainer.state import default_root

            self._root = default_root()
        return self._root

    def warn(self, msg: str) -> None:
        """A diagnostic of the runtime. With --log it goes to the log only, as runc's
        logrus does: an engine's runtime shares the container's stdio (containerd's shim
        gives `create` the container's pipes), and a line there would be the container's
        output, in `docker logs`."""
        if self.log:
            _log_line(self.log, self.log_format, "warning", msg)
        else:
            sys.stderr.write(f"runner: warning: {msg}\n")

    def debug_msg(self, msg: str) -> None:
        """A remark shown only with --debug (to the log when there is one)."""
        if not self.debug:
            return
        if self.log:
            _log_line(self.log, self.log_format, "debug", msg)
        else:
            sys.stderr.write(f"runner: debug: {msg}\n")


def main(argv: list) -> int:
    # global flags come before the verb
    split = next((i for i, a in enumerate(argv) if not a.startswith("-") and
                  (i == 0 or not _takes_value(argv[i - 1]))), len(argv))
    opts: dict = {}
    try:
        opts, _ = parse(argv[:split], GLOBAL_FLAGS)
        if opts["version"]:
            from .info import version
            return version()
        if opts["help"] or split == len(argv):
            sys.stdout.write(USAGE + usage(GLOBAL_FLAGS) + "\n")
            return 0 if opts["help"] else 1
        if opts["rootless"] not in ("true", "false", "auto"):
            raise InvalidArgument(f"--rootless: {opts['rootless']!r} is not true, false or auto")
        if opts["log_format"] not in ("text", "json"):
            raise InvalidArgument(f"--log-format: unknown format {opts['log_format']!r} (want text or json)")
        verb = argv[split]
        module = VERBS.get(verb)
        if module is None:
            raise InvalidArgument(f"unknown command {verb!r}; see 'runner --help'")
        if verb not in BOUNDED_VERBS:
            import gc

            gc.enable()
        ctx = Context(opts)
        from libcontainer import log

        log.sink = ctx.warn  # the library's warnings, printed as runc prints them
        log.debug_sink = ctx.debug_msg
        mod = __import__(f"runner.{module}", fromlist=[module])
        return getattr(mod, "cmd_" + verb.replace("-", "_"))(ctx, argv[split + 1:])
    except ContainerError as e:
        _report(opts, str(e))
        if opts.get("debug"):
            import traceback

            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        # a syscall the runtime itself made failed: say which, on which path
        where = f" {e.filename}" if e.filename else ""
        _report(opts, f"{e.strerror or e}{where}")
        if opts.get("debug"):
            raise
        return 1
    except Exception as e:  # a bug of ours: one line, the traceback with --debug
        _report(opts, f"internal error: {type(e).__name__}: {e}")
        if opts.get("debug"):
            raise
        return 1


def _takes_value(flag: str) -> bool:
    name = flag.partition("=")[0]
    return "=" not in flag and any(name in f.names and f.takes_value for f in GLOBAL_FLAGS)


def _report(opts, msg: str) -> None:
    sys.stderr.write(f"runner: {msg}\n")
    if opts.get("log"):
        _log_line(opts["log"], opts.get("log_format"), "error", msg)


def _log_line(path: str, fmt, level: str, msg: str) -> None:
    """One line of runc's log (logrus): {"level","msg","time"} with --log-format json,
    else `time="…" level=… msg="…"`. Appended with one write, so that lines of several
    runtime calls sharing the file (the shim's log.json) do not interleave."""
    import os
    import time

    from libcontainer import jsonio

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if fmt == "json":
        line = jsonio.dumps({"level": level, "msg": msg, "time": now})
    else:
        line = f'time="{now}" level={level} msg={jsonio.dumps(msg)}'
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except OSError:
        return
    try:
        os.write(fd, (line + "\n").encode())
    except OSError:
        pass
    finally:
        os.close(fd)
