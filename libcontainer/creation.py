"""Making a container (runtime.md): `create` — state dir, plan, cgroups, then
`launch.start_plan` to clone and drive the child — and `run`, which is create + start +
wait + delete. What a create is asked is a request.CreateRequest; what happens between
clone and execve is in launch.py; the made container is a container.Container."""
from __future__ import annotations

import os
import sys
import time

from . import fileio, namespaces, plan as planmod, spec as specmod
from .container import FIFO, Container, _release_host_mounts, _warn
from .errors import ContainerError, InvalidArgument
from .launch import (Forwarder, close_quietly, early_size, exit_code, kill_and_reap, setup_console,
                     start_plan, stdio_fds, wait_pid)
from .ops import CONSOLE, SECCOMP
from .owners import owner
from .request import CreateRequest
from .state import StateDir, crash_point, write_atomic
from .state import proc_stat as _proc_stat
from .timefmt import rfc3339nano

__all__ = ["CreateRequest", "create", "create_from", "run", "wait_cleanup"]


def create(bundle, container_id: str = "", **options) -> Container:
    """Set the container up and leave its init blocked before execve (status created).
    `create(bundle, id, root=…, stdio=…, …)` with the options of request.CreateRequest, or
    `create(request)`. Nothing is left behind if any step fails."""
    req = _request(bundle, container_id, options)
    if "_start_now" in options or "_foreground" in options:  # (the names before CreateRequest)
        req.start_now = options.get("_start_now", False)
        req.foreground = options.get("_foreground", False)
    return create_from(req)


def _request(bundle, container_id: str, options: dict) -> CreateRequest:
    if isinstance(bundle, CreateRequest):
        if container_id or options:
            raise InvalidArgument("create: a CreateRequest carries every option; pass it alone")
        return bundle
    options = {k: v for k, v in options.items() if k not in ("_start_now", "_foreground")}
    return CreateRequest(bundle, container_id, **options)


def create_from(req: CreateRequest) -> Container:
    """create() of a CreateRequest."""
    d = StateDir(req.root, req.id)
    if "teardown" in _loaded:  # this id's earlier run may still be being removed
        _loaded["teardown"].wait_for(req.root, req.id)
    spec, config_bytes = specmod.load_with_bytes(req.bundle)
    if spec.hooks:
        from .hooks import parse

        hooks = parse(spec.hooks)
    else:
        hooks = {}
    net_devices = _net_devices(spec)
    stdio = stdio_fds(req.stdio)
    if spec.process is not None and spec.process.terminal and not req.console_socket and \
            not req.foreground:
        raise InvalidArgument("process.terminal is true: a detached container needs --console-socket")
    if req.console_socket:
        from .terminal import check_console_socket

        check_console_socket(req.console_socket)
    # Intent before action: the cgroup directories are decided (and linux.resources
    # checked) now, and recorded with the first state, before any of them is made; so at
    # every instant delete --force can find from the state all that exists.
    cg = _plan_cgroups(spec, req.id, req.systemd_cgroup, req.cgroup_controllers)
    me = _own_stat()
    state = {"ociVersion": specmod.OCI_VERSION, "id": req.id, "status": "creating",
             "pid": 0, "bundle": spec.bundle, "annotations": spec.annotations,
             "created": rfc3339nano(time.time_ns()),
             "owner": owner(), "rootfs": spec.root_path,
             "creator": os.getpid(), "creator_start": me[1] if me else None}
    if cg is not None:
        state["cgroups"] = cg.state()
    relay = None
    if req.notify_socket:
        from .notify import Relay

        relay = Relay(req.notify_socket, d.path)  # refuses a bad one before anything is made
        spec = relay.spec(spec)
    try:
        lock = d.create(state)  # held until the container is created: other commands wait
    except BaseException:
        if relay is not None:
            relay.close()
        if cg is not None:
            cg.close()
        raise
    try:
        crash_point("create: state dir claimed")
        talk = _Talk(d, spec, state, hooks, net_devices, req)
        talk.cg = cg
        return _create(talk, req, stdio, config_bytes, relay)
    finally:
        lock.__exit__(None, None, None)


def _status_fd(fd: int) -> int:
    """The init's status fd, checked: 0-2 would be replaced by the stdio the child sets up."""
    if not isinstance(fd, int) or isinstance(fd, bool) or 0 <= fd <= 2:
        raise InvalidArgument(f"init_status_fd: want an fd above 2 (or -1), not {fd!r}")
    return max(fd, -1)


_me: list = []


def _own_stat():
    """This process's (state, start time): read once, the start time never changes (a
    forked child of this process has its own pid, and reads its own)."""
    if not _me or _me[0] != os.getpid():
        _me[:] = [os.getpid(), _proc_stat(os.getpid())]
    return _me[1]


def _create(talk: "_Talk", req: CreateRequest, stdio, config_bytes: bytes,
            relay=None) -> Container:
    """create, once the state dir is claimed (`talk` holds what was decided: the state,
    the spec, the planned cgroup): the exec fifo, the cgroups, the plan, the host's part,
    the launch, the state. On any failure what was made is undone (_undo)."""
    d, spec, state, hooks, net_devices = (talk.d, talk.spec, talk.state, talk.hooks,
                                          talk.net_devices)
    cg, talk.cg = talk.cg, None
    _start_now, _foreground = req.start_now, req.foreground
    try:
        if relay is not None:  # the directory the init mounts; `run` binds the socket now
            relay.prepare(bind=_start_now)
        fifo_fd = -1 if _start_now else _exec_fifo(d)
        try:
            # the cgroup first: a `type: cgroup` mount shows the container its own
            if cg is not None:
                planned, cg = cg, None  # a failed make() removed what it made, and kills nobody
                intended = len(planned.created)
                planned.make()  # raises, or made it all
                cg = talk.cg = planned
                if len(cg.created) != intended:
                    # a shared parent another container's delete removed meanwhile,
                    # made again: recorded too
                    state["cgroups"] = cg.state()
                    d.write(state)
            crash_point("create: cgroups made")
            plan = talk.plan = _planner()(
                spec, no_pivot=req.no_pivot, keep_fds=req.keep_fds, start_fifo_fd=fifo_fd,
                hooks=hooks, new_keyring=req.new_keyring, warn=req.warn,
                listen_fds=req.listen_fds, cgroup=cg,
                node_dir=d.path)
            if req.init:
                planmod.use_init(plan, _status_fd(req.init_status_fd))
            _host_side(d, state, plan, config_bytes)
            talk.parent_joins = _cgroup_entry(cg, plan)
            # a run with nothing for this process to do before the execve: the pid and its
            # start time are recorded after (below), the cgroups joined by the child and
            # clone3
            no_go = _start_now and not hooks and not net_devices and not talk.parent_joins
            # on v2, clone3 puts the child in its cgroup: it never runs outside it
            talk.cgroup_fd = cg.clone_fd() if cg is not None else -1
            try:
                _netns_ahead(plan)
                started = start_plan(plan, stdio=stdio, before_go=talk.before_go,
                                     on_sync=talk.on_sync, on_fd=talk.on_fd,
                                     cgroup_fd=talk.cgroup_fd, no_go=no_go)
            finally:
                if talk.cgroup_fd >= 0:
                    os.close(talk.cgroup_fd)
                if plan.netns_fd >= 0:
                    os.close(plan.netns_fd)
        finally:
            if fifo_fd >= 0:
                os.close(fifo_fd)
        master = talk.master[0] if talk.master else -1
        try:
            if state["pid"] != started.pid:
                state["pid"] = started.pid
                st = _proc_stat(started.pid)
                state["start_time"] = st[1] if st else None
                if no_go:
                    crash_point("create: init in its cgroups")
            crash_point("create: init set up")
            state["status"] = "running" if _start_now else "created"
            d.write(state)
            crash_point("create: state created")
            if req.pid_file:
                write_atomic(req.pid_file, str(started.pid))
                crash_point("create: pid file written")
            if master >= 0:
                setup_console(master, spec.process, req.console_socket)
        except BaseException:
            kill_and_reap(started.pid)
            raise
        finally:
            for fd in started.fds.values():
                if not (_foreground and fd == master):
                    close_quietly(fd)
    except BaseException as e:
        if relay is not None:
            relay.close()
        _undo(e, d, state, talk.cg, hooks, talk.hooks_ran)
        raise
    c = Container(d, state)
    c._spec = spec
    c._master = master if _foreground else -1
    spares = sys.modules.get("libcontainer.cgroups.spares")
    if spares is not None:  # made from the second container on, if at all
        spares.kick()
    if relay is not None:
        if _start_now:
            c._notify = relay
        else:
            relay.close()  # `start` relays, with a socket of its own
    return c


def _exec_fifo(d) -> int:
    """The fifo `start` opens: the init blocks writing to it until then."""
    fifo = os.path.join(d.path, FIFO)
    os.mkfifo(fifo, 0o600)
    # the init reopens it for writing after it has become process.user (any uid, possibly
    # a user namespace's): writable by all, as runc makes it. Only `start` (root) can open
    # it for reading, which is what lets the init go on.
    os.chmod(fifo, 0o622)
    fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    crash_point("create: exec fifo made")
    return fd


def _host_side(d, state, plan, config_bytes: bytes) -> None:
    """What the parent does on the host before the clone: the config copy, device nodes
    for a user namespace, the record of a mount-namespace-less container's mounts."""
    # as read: the bytes that were parsed
    fileio.create(os.path.join(d.path, "config.json"), config_bytes)
    crash_point("create: config.json copied")
    if plan.host_nodes:  # device nodes for a user namespace, made on the host
        from .rootfs import make_nodes

        make_nodes(plan)
    if plan.host_mounts:
        # no mount namespace: what the init mounts stays in ours until delete
        from . import hostmounts

        state["host_mounts"] = hostmounts.record(plan.host_mounts)
        d.write(state)


class _Talk:
    """The parent's side of the sync protocol during a create (launch.start_plan calls
    these): the init's pid into its cgroups and the state, the hooks, the fds it sends."""

    def __init__(self, d, spec, state, hooks, net_devices, req: CreateRequest):
        self.d, self.spec, self.state, self.hooks = d, spec, state, hooks
        self.net_devices, self.console_socket, self.foreground = (net_devices,
                                                                  req.console_socket,
                                                                  req.foreground)
        self.cg = None            # the cgroup once made
        self.plan = None
        self.parent_joins = False  # the parent moves the init into its cgroups
        self.cgroup_fd = -1
        self.master: list = []     # the console's pty master, when the init sends it
        self.hooks_ran: list = []  # non-empty once the runtime's hooks started (poststop owes them)

    def oci_state(self, pid: int, status: str = "creating") -> bytes:
        s = {k: self.state[k] for k in ("ociVersion", "id", "bundle", "annotations")}
        s.update(status=status, pid=pid)
        from . import jsonio

        return jsonio.dumps(s).encode()

    def before_go(self, pid: int):
        state = self.state
        if self.parent_joins:  # v2 was joined by clone3 itself
            self.cg.join(pid, v2_too=self.cgroup_fd < 0)
        if self.net_devices:  # the namespace exists, nothing of the container runs yet
            from .netdevices import move

            move(self.net_devices, pid)
        state["pid"] = pid
        st = _proc_stat(pid)
        state["start_time"] = st[1] if st else None
        if self.cg is None:
            # without a cgroup the pid is the only way to find the child if this process
            # dies now; with one, delete --force empties the cgroup
            self.d.write(state)
        crash_point("create: init in its cgroups")
        return self.oci_state(pid) if self.hooks else None

    def on_sync(self, pid: int) -> bytes:
        from .hooks import run as run_hooks

        # prestart (runtime-spec 1.0 ran it at `start`) sees "created", as crun gives it;
        # createRuntime, a stage of create, "creating"
        self.hooks_ran.append(pid)
        run_hooks(self.hooks.get("prestart", []), self.oci_state(pid, "created").decode())
        run_hooks(self.hooks.get("createRuntime", []), self.oci_state(pid).decode())
        crash_point("create: createRuntime hooks run")
        return self.oci_state(pid, "created")

    def on_fd(self, kind: int, fd: int) -> None:
        if kind == CONSOLE:
            self.master.append(fd)
            if self.foreground and not self.console_socket and os.isatty(0):
                from .terminal import copy_size

                copy_size(0, fd)  # the relayed pty starts at our terminal's size
            early_size(fd, self.spec.process)
        elif kind == SECCOMP:
            # SCMP_ACT_NOTIFY: the listener fd goes to the agent at listenerPath
            from .security import seccomp

            pid = self.state["pid"]
            seccomp.send_listener(self.plan, fd, pid, self.oci_state(pid))


def _undo(e: BaseException, d, state, cg, hooks, hooks_ran: list) -> None:
    """A create failed: remove what it made (the cgroup, mounts in our namespace, the
    state dir) and run the poststop hooks it owes."""
    try:
        if cg is not None:
            cg.destroy()
        _release_host_mounts(state)
        d.remove()
    except Exception as cleanup:
        # the state stays, and says what is left: delete --force finishes the job
        if not isinstance(e, Exception):
            raise
        raise ContainerError(f"{e} (and removing what was made failed: {cleanup}; "
                             f"`delete --force {d.id}` finishes it)") from None
    if hooks_ran:
        # the lifecycle of a failed create goes on to delete, poststop hooks included (as
        # runc's destroy): what a createRuntime hook set up (a network) is undone
        from .hooks import run_quietly

        run_quietly(hooks.get("poststop", []),
                    lambda: dict({k: state[k] for k in ("ociVersion", "id", "bundle",
                                                         "annotations")},
                                 status="stopped", pid=hooks_ran[0]), _warn)


def _cgroup_entry(cg, plan) -> bool:
    """How the new process enters its cgroups: the child joins the v1 ones itself when it
    still sees the host's cgroup files as the host's root (no user namespace, no joined
    mount namespace); otherwise the parent moves it. True when the parent must."""
    if cg is None:
        return False
    if cg.needs_pid:  # a systemd scope: started with the init's pid
        return True
    user, mount = namespaces.FLAGS["user"], namespaces.FLAGS["mount"]
    if plan.clone_flags & user or any(f in (user, mount) for f, _ in plan.joins):
        return True
    plan.cgroup_files = cg.self_join_files()
    return False  # and v2, if there is one, by clone3 with CLONE_INTO_CGROUP


_plans = [0]  # containers this process planned


def _planner():
    """plan.make, or from this process's second container on the cache of plans by config
    (plancache.py): a one-shot process (`runner run`) loads nothing more."""
    _plans[0] += 1
    if _plans[0] < 2:
        return planmod.make
    from . import plancache

    return plancache.make


_starts = [0]  # containers this process planned with a new network namespace


def _netns_ahead(plan) -> None:
    """From this process's second container on, a network namespace made ahead by a
    worker thread (netpool.py) instead of CLONE_NEWNET on the start's path. Not with a
    user namespace: the network namespace must be that one's."""
    user, net = namespaces.FLAGS["user"], namespaces.FLAGS["network"]
    if not plan.clone_flags & net or plan.clone_flags & user or \
            any(f == user for f, _ in plan.joins) or os.geteuid() != 0:
        return
    _starts[0] += 1
    if _starts[0] < 2:
        return  # a one-shot process (`runner run`) loads nothing more
    from . import netpool

    fd = netpool.take()
    if fd >= 0:
        plan.netns_fd = fd
        plan.clone_flags &= ~net


def _plan_cgroups(spec, container_id: str, systemd: bool = False, controllers: tuple = ()):
    """The container's cgroup, decided and checked (linux.resources: an error names the
    field); Manager.make creates and limits it before the container's process runs.
    `controllers`: only these v1 hierarchies (not for a systemd scope)."""
    if systemd:
        from .cgroups.systemd import plan

        return plan(container_id, spec.linux.cgroups_path, spec.linux.resources,
                    devices=spec.linux.devices, annotations=spec.annotations)
    from . import cgroups

    return cgroups.Manager.plan(container_id, spec.linux.cgroups_path, spec.linux.resources,
                                devices=spec.linux.devices, controllers=controllers)


def run(bundle, container_id: str = "", *, detach: bool = False, keep: bool = False,
        cleanup: str = "now", **options):
    """create + start (+ wait and delete, in the foreground): `run(bundle, id, …)` with the
    options of request.CreateRequest (root, stdio, console_socket, …), or `run(request)`. Foreground: returns the exit
    code (128+N if killed by signal N) and leaves nothing of the container behind (unless
    keep). Detached: returns the Container, running.

    cleanup="background": return as soon as the process is reaped and remove the container
    on a worker thread while the caller goes on (teardown.py): a program starting many
    containers overlaps each one's removal with the next one's start. The id is free again
    for this process at once (a create of it waits); `wait_cleanup()` waits for all, and
    so does the interpreter's exit.

    notify_socket (NOTIFY_SOCKET): the container's READY=1 is relayed to it (notify.py);
    detached, run returns once it was (or the process exited)."""
    if cleanup not in ("now", "background"):
        raise InvalidArgument(f"cleanup: {cleanup!r} is not 'now' or 'background'")
    req = _request(bundle, container_id, options)
    req.start_now, req.foreground = True, not detach
    warn = req.warn = req.warn or _warn
    console_socket = req.console_socket
    with Forwarder() as fwd:
        c = create_from(req)
        notifier = c._notify
        try:
            if c.spec.hooks:
                from . import hooks

                hooks.run_quietly(hooks.for_stage(c.spec.hooks, "poststart"),
                                  c._poststart_state, warn)
            if detach:
                if notifier is not None:
                    _relay_detached(c, notifier, warn)
                return c
            fwd.attach(c.pid)
            if notifier is not None:  # MAINPID: this process, the one that lives as long
                notifier.relay_in_background(c.pid, c._state.get("start_time"), os.getpid(), warn)
            if c._master >= 0 and not console_socket:
                from .terminal import relay

                fwd.master = c._master
                status = relay(c._master, c.pid)
            else:
                status = wait_pid(c.pid)
            return exit_code(status)
        finally:
            if notifier is not None:
                notifier.close()
            if c._master >= 0:
                close_quietly(c._master)
            if not detach and not keep:
                if cleanup == "background":
                    _teardown().defer(c)
                else:
                    c.delete(force=True)


def _relay_detached(c: Container, relay, warn) -> None:
    """A detached run returns once the container said READY (or exited); if the host cannot
    be told, the container goes (as runc destroys it)."""
    try:
        relay.wait_ready(c.pid, c._state.get("start_time"), c.pid, warn)
    except BaseException:
        c.delete(force=True)
        raise


_loaded: dict = {}


def _teardown():
    """teardown.py, imported (with threading) only by a program that defers a cleanup."""
    if "teardown" not in _loaded:
        from . import teardown

        _loaded["teardown"] = teardown
    return _loaded["teardown"]


def wait_cleanup() -> None:
    """Wait until every container that run(cleanup="background") left is removed."""
    if "teardown" in _loaded:
        _loaded["teardown"].flush()


def _net_devices(spec) -> list:
    """linux.netDevices, checked before anything is made (the module and pyroute2 load
    only for a config that names devices)."""
    linux = spec.raw.get("linux")
    if not isinstance(linux, dict) or not linux.get("netDevices"):
        return []
    from . import netdevices

    devices = netdevices.parse(linux)
    netdevices.check(devices, any(n.type == "network" for n in spec.linux.namespaces))
    return devices
