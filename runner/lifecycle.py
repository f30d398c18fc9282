"""Verbs that start, signal and stop containers."""
from __future__ import annotations

from libcontainer import container as lc
from libcontainer.errors import ContainerError, InvalidArgument, WrongState

from .args import Flag, bundle_dir, flag_help, parse, positional_id

COMMON = [
    Flag("--bundle,-b", "bundle", True, "", "path to the bundle (default: current directory)"),
    Flag("--console-socket", "console_socket", True, "", "unix socket to send the pty master to"),
    Flag("--pid-file", "pid_file", True, "", "write the container's pid here"),
    Flag("--no-pivot", "no_pivot", help="use MS_MOVE + chroot instead of pivot_root"),
    Flag("--no-new-keyring", "no_new_keyring", help="keep the runner's session keyring"),
    Flag("--preserve-fds", "preserve_fds", True, "0", "pass N more fds (3 .. 3+N-1) to the process"),
    Flag("--help,-h", "help"),
]
RUN_FLAGS = COMMON + [
    Flag("--detach,-d", "detach", help="do not wait for the container"),
    Flag("--keep", "keep", help="do not delete the container when it exits"),
    Flag("--image", "image", True, "", "run an image from the store (see pull); deleting the "
         "container removes its bundle"),
    Flag("--storage", "storage", True, "", "the image store, with --image"),
]
CREATE_FLAGS = COMMON
HELP_ONLY = [Flag("--help,-h", "help")]
KILL_FLAGS = [Flag("--all,-a", "all", help="signal every process of the container"),
              Flag("--help,-h", "help")]
DELETE_FLAGS = [Flag("--force,-f", "force", help="kill the container first if it runs"),
                Flag("--regex,-r", "regex", help="ID is a regular expression: every match (crun)"),
                Flag("--help,-h", "help")]

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "POLL": 29, "PWR": 30, "SYS": 31,
}


def parse_signal(text: str) -> int:
    if text.isdigit():
        n = int(text)
        # 0 is kill(2)'s existence check: runc passes it through, engines use it
        if 0 <= n <= 64:
            return n
        raise InvalidArgument(f"signal: {text} is not a valid signal number")
    name = text.upper()
    name = name[3:] if name.startswith("SIG") else name
    if name.startswith("RTMIN") or name.startswith("RTMAX"):
        base, _, off = name[5:].partition("+") if "+" in name else (name[5:], "", "0")
        if name[5:] in ("", "+" + off) or base == "":
            return (34 + int(off or 0)) if name.startswith("RTMIN") else (64 - int(off or 0))
    if name not in SIGNALS:
        raise InvalidArgument(f"signal: unknown signal {text!r}")
    return SIGNALS[name]


def int_flag(value: str, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f"{name}: {value!r} is not a number") from None
    if n < 0:
        raise InvalidArgument(f"{name}: must not be negative")
    return n


def _create_request(ctx, opts, bundle: str, cid: str):
    """What `create` and `run` ask of libcontainer (a request.CreateRequest), from the
    flags and the environment. (Imported here: start, kill, delete need none of it.)"""
    from libcontainer.request import CreateRequest

    return CreateRequest(bundle, cid, root=ctx.root, console_socket=opts["console_socket"],
                         pid_file=opts["pid_file"], no_pivot=opts["no_pivot"],
                         new_keyring=not opts["no_new_keyring"],
                         keep_fds=int_flag(opts["preserve_fds"], "--preserve-fds"),
                         warn=ctx.warn, listen_fds=_listen_fds(),
                         notify_socket=_notify_socket(), systemd_cgroup=ctx.systemd_cgroup)


def _notify_socket() -> str:
    """systemd's sd_notify socket (a Type=notify unit, podman --sdnotify=container): the
    container's READY=1 is relayed to it, as runc does (libcontainer/notify.py)."""
    import os

    return os.environ.get("NOTIFY_SOCKET", "")


def _listen_fds() -> int:
    """Socket activation, as runc does it: fds systemd passed to this very process (its
    LISTEN_PID) go on to the container's."""
    import os

    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return 0
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        raise InvalidArgument("LISTEN_FDS: not a number") from None
    return max(n, 0)


def cmd_run(ctx, argv: list) -> int:
    opts, pos = parse(argv, RUN_FLAGS)
    if opts["help"]:
        return flag_help("run", RUN_FLAGS)
    cid = positional_id(pos, "run")
    bundle = bundle_dir(opts["bundle"])
    if opts["image"]:
        from .images import image_bundle  # only here: a plain run imports no image code

        bundle = image_bundle(ctx, opts, cid)
    from libcontainer.creation import run

    result = run(_create_request(ctx, opts, bundle, cid), detach=opts["detach"],
                 keep=opts["keep"])
    return 0 if opts["detach"] else result


def cmd_create(ctx, argv: list) -> int:
    opts, pos = parse(argv, CREATE_FLAGS)
    if opts["help"]:
        return flag_help("create", CREATE_FLAGS)
    cid = positional_id(pos, "create")
    from libcontainer.creation import create_from

    create_from(_create_request(ctx, opts, bundle_dir(opts["bundle"]), cid))
    return 0


def _state_change(ctx, argv: list, verb: str) -> int:
    """start, pause, resume: `runner VERB ID` → Container.VERB()."""
    opts, pos = parse(argv, HELP_ONLY)
    if opts["help"]:
        return flag_help(f"{verb} ID", [])
    getattr(lc.load(positional_id(pos, verb), ctx.root), verb)()
    return 0


def cmd_start(ctx, argv: list) -> int:
    opts, pos = parse(argv, HELP_ONLY)
    if opts["help"]:
        return flag_help("start ID", [])
    lc.load(positional_id(pos, "start"), ctx.root).start(notify_socket=_notify_socket())
    return 0


def cmd_kill(ctx, argv: list) -> int:
    opts, pos = parse(argv, KILL_FLAGS)
    if opts["help"]:
        return flag_help("kill ID [SIGNAL]", KILL_FLAGS)
    if not 1 <= len(pos) <= 2:
        raise InvalidArgument("kill: expects a container id and an optional signal")
    sig = parse_signal(pos[1]) if len(pos) == 2 else 15
    c = lc.load(pos[0], ctx.root)
    try:
        c.kill(sig, all=opts["all"])
    except WrongState:
        # runc: --all of a container that is not running is no error (nothing to signal)
        if not (opts["all"] and c.status() == "stopped"):
            raise
    return 0


def cmd_delete(ctx, argv: list) -> int:
    opts, pos = parse(argv, DELETE_FLAGS)
    if opts["help"]:
        return flag_help("delete", DELETE_FLAGS)
    cid = positional_id(pos, "delete")
    if opts["regex"]:
        return _delete_matching(ctx, cid, opts["force"])
    report = None
    if ctx.debug:
        def report(msg: str) -> None:
            ctx.debug_msg(f"delete {cid}: {msg}")
    if opts["force"]:
        # whatever of it exists, with or without a readable state; nothing is no error (runc)
        from libcontainer.recovery import force_delete

        force_delete(cid, ctx.root, report=report)
    else:
        lc.load(cid, ctx.root).delete(report=report)
    return 0


def _delete_matching(ctx, pattern: str, force: bool) -> int:
    """crun's delete --regex: every container whose ID the (extended) expression matches
    somewhere; each failure is said, and makes the exit status 1."""
    import re
    import sys

    from libcontainer.recovery import force_delete

    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise InvalidArgument(f"delete --regex: {pattern!r} is not a regular expression: {e}") \
            from None
    status = 0
    for c in lc.list_containers(ctx.root):
        if not rx.search(c.id):
            continue
        try:
            if force:
                force_delete(c.id, ctx.root)
            else:
                lc.load(c.id, ctx.root).delete()
        except ContainerError as e:
            sys.stderr.write(f"runner: {e}\n")
            status = 1
    return status


def cmd_pause(ctx, argv: list) -> int:
    return _state_change(ctx, argv, "pause")


def cmd_resume(ctx, argv: list) -> int:
    return _state_change(ctx, argv, "resume")




EXEC_FLAGS = [
    Flag("--process,-p", "process", True, "", "path to a process.json (replaces the args and flags)"),
    Flag("--tty,-t", "tty", help="allocate a pseudo-TTY"),
    Flag("--detach,-d", "detach", help="do not wait for the process"),
    Flag("--pid-file", "pid_file", True, "", "write the process's pid here"),
    Flag("--console-socket", "console_socket", True, "", "unix socket to send the pty master to"),
    Flag("--env,-e", "env", True, help="add an environment variable KEY=value", multiple=True),
    Flag("--cwd", "cwd", True, "", "working directory in the container"),
    Flag("--user,-u", "user", True, "", "uid[:gid]"),
    Flag("--additional-gids,-g", "gids", True, help="additional gid", multiple=True),
    Flag("--cap,-c", "caps", True, help="add a capability", multiple=True),
    Flag("--no-new-privs", "no_new_privs", help="set no_new_privs"),
    Flag("--preserve-fds", "preserve_fds", True, "0", "pass N more fds (3 .. 3+N-1) to the process"),
    Flag("--ignore-paused", "ignore_paused", help="accepted for runc compatibility"),
    Flag("--cgroup", "cgroup", True, help="run the process in an (existing) sub-cgroup of the "
         "container's: [CONTROLLER[,CONTROLLER…]:]PATH", multiple=True),
    Flag("--apparmor", "apparmor", True, "", "AppArmor profile (refused: not supported)"),
    Flag("--process-label", "process_label", True, "",
         "SELinux label (refused: not supported)"),
    Flag("--help,-h", "help"),
]


def _exec_process(c, opts, args, warn):
    from libcontainer import jsonio
    from libcontainer.errors import ConfigError
    from libcontainer.spec import Capabilities, Process, User

    if opts["process"]:
        try:
            with open(opts["process"], "rb") as f:
                raw = jsonio.loads(f.read())
        except OSError as e:
            raise InvalidArgument(f"--process: {opts['process']}: {e.strerror}") from None
        except ValueError as e:
            raise InvalidArgument(f"--process: {opts['process']}: malformed JSON: {e}") from None
        if not isinstance(raw, dict):
            raise InvalidArgument("--process: must hold a JSON object")
        try:
            return Process.parse(raw, "process")
        except ConfigError as e:
            raise InvalidArgument(f"--process: {e}") from None
    if not args:
        raise InvalidArgument("exec: expects a container id and a command (or --process)")
    base = c.spec.process
    user = base.user
    try:
        gids = tuple(int(g) for g in opts["gids"]) if opts["gids"] else user.additional_gids
    except ValueError:
        raise InvalidArgument(f"--additional-gids: {opts['gids']} are not all numbers") from None
    if opts["user"]:
        # runc: --user sets uid and gid; the config's additional gids stay unless -g
        uid, _, gid = opts["user"].partition(":")
        try:
            user = User(int(uid), int(gid) if gid else 0, user.umask, gids)
        except ValueError:
            raise InvalidArgument(f"--user: {opts['user']!r} is not uid[:gid]") from None
    elif opts["gids"]:
        user = User(user.uid, user.gid, user.umask, gids)
    caps = base.capabilities
    if opts["caps"]:
        caps = caps or Capabilities()
        extra = tuple(_known_caps(opts["caps"], warn))
        # ambient too where the config's inheritable set has it (runc adds --cap to the
        # ambient set when there is an inheritable one; the kernel raises only those): a
        # process of another user keeps it across execve. --cap leaves inheritable alone.
        inh = {c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
               for c in caps.inheritable}
        amb = tuple(c for c in extra
                    if (c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()) in inh)
        caps = Capabilities(caps.bounding + extra, caps.effective + extra,
                            caps.permitted + extra, caps.inheritable, caps.ambient + amb)
    cwd = opts["cwd"] or base.cwd
    if not cwd.startswith("/"):
        raise InvalidArgument(f"--cwd: {cwd!r} must be an absolute path")
    for e in opts["env"]:
        if "=" not in e:
            raise InvalidArgument(f"--env: {e!r} is not KEY=value")
    # like runc, the config's process is the base: what no flag overrides is inherited;
    # an --env KEY replaces the config's (runc's init sets them in order: the last wins)
    env: dict = {}
    for e in tuple(base.env) + tuple(opts["env"]):
        env[e.split("=", 1)[0]] = e
    return Process(args=args, env=tuple(env.values()), cwd=cwd, user=user,
                   terminal=opts["tty"], capabilities=caps, rlimits=base.rlimits,
                   no_new_privileges=base.no_new_privileges or opts["no_new_privs"],
                   apparmor_profile=opts["apparmor"] or base.apparmor_profile,
                   selinux_label=opts["process_label"] or base.selinux_label,
                   io_priority=base.io_priority, scheduler=base.scheduler,
                   exec_cpu_affinity=base.exec_cpu_affinity)


def _known_caps(names, warn) -> list:
    """--cap names; one that cannot be mapped is skipped with a warning, as in a config
    (config.md: logged, not fatal; runc and crun warn and run)."""
    from libcontainer.security import capabilities

    known = capabilities.known_names()
    out = []
    for name in names:
        key = name.lower()
        if (key[4:] if key.startswith("cap_") else key) in known:
            out.append(name)
        else:
            warn(f"--cap: unknown capability {name!r}; skipped")
    return out


def cmd_exec(ctx, argv: list) -> int:
    opts, pos = parse(argv, EXEC_FLAGS, stop_at_positional=True)
    if opts["help"]:
        return flag_help("exec ID [COMMAND [ARGS…]]", EXEC_FLAGS)
    if not pos:
        raise InvalidArgument("exec: expects a container id")
    _refuse_lsm_flags(opts)
    sub_cgroups = _sub_cgroups(opts["cgroup"])
    c = lc.load(pos[0], ctx.root)
    proc = _exec_process(c, opts, pos[1:], ctx.warn)
    result = c.exec(proc, console_socket=opts["console_socket"], detach=opts["detach"],
                    pid_file=opts["pid_file"],
                    keep_fds=int_flag(opts["preserve_fds"], "--preserve-fds"),
                    sub_cgroups=sub_cgroups)
    return 0 if opts["detach"] else result


def _refuse_lsm_flags(opts) -> None:
    """--apparmor and --process-label ask for what this runtime cannot apply: refused
    before anything starts, as a config's apparmorProfile/selinuxLabel is."""
    from libcontainer.security import lsm

    if opts["apparmor"]:
        lsm.refuse_apparmor("--apparmor", opts["apparmor"])
    if opts["process_label"]:
        lsm.refuse_selinux("--process-label", opts["process_label"])


def _sub_cgroups(args: list) -> dict | None:
    """runc's --cgroup: one PATH (every hierarchy), or CONTROLLER[,…]:PATH for each v1
    controller named → {controller or "": PATH}."""
    if not args:
        return None
    paths: dict = {}
    for a in args:
        ctrls, sep, path = a.partition(":")
        if not sep:
            if len(args) != 1:
                raise InvalidArgument(f"--cgroup: {a!r}: missing CONTROLLER: prefix (with more "
                                      "than one --cgroup, each names its controllers)")
            paths[""] = a
            continue
        for ctrl in ctrls.split(","):
            if not ctrl:
                raise InvalidArgument(f"--cgroup: {a!r}: empty controller")
            if ctrl in paths:
                raise InvalidArgument(f"--cgroup: controller {ctrl} given more than once")
            paths[ctrl] = path
    return paths
