"""The container lifecycle (runtime.md): create, start, run, kill, delete, state (exec is
execute.py's, `delete --force` of what no state describes recovery.py's).

Reading top to bottom: the Container (state, signals, teardown), then `create` — state dir,
plan, cgroups, then `launch.start_plan` to clone and drive the child — and `run`, which is
create + start + wait + delete. What happens between clone and execve is in launch.py."""
from __future__ import annotations

import os
import time

from . import fileio, namespaces, plan as planmod, spec as specmod
from .errors import (ConfigError, ContainerError, DamagedState, InvalidArgument, NotFound,
                     WrongState)
from .launch import (Forwarder, close_quietly, early_size, exit_code, kill_and_reap, setup_console,
                     start_plan, stdio_fds, wait_pid)
from .ops import CONSOLE, SECCOMP
from .state import StateDir, crash_point, default_root, write_atomic
from .state import alive as _alive, proc_stat as _proc_stat

__all__ = ["Container", "create", "run", "load", "list_containers", "wait_cleanup", "NotFound"]

FIFO = "exec.fifo"
START_TIMEOUT = 10.0  # seconds `start` waits for a live init to take the go (runc has none)


# ---- the container --------------------------------------------------------------------

def _serialised(method):
    """Run a Container method holding the container's lock, on freshly read state: another
    command may have changed it (or deleted the container) while this one waited."""
    def locked(self, *args, **kw):
        with self._dir.lock():
            self._state = self._dir.read()
            return method(self, *args, **kw)
    locked.__name__, locked.__doc__ = method.__name__, method.__doc__
    return locked


class Container:
    """A container known to the state directory. Get one with `create`, `load` or `run`
    (detached); every method re-reads what it needs, so separate processes can drive it."""

    def __init__(self, state_dir: StateDir, state: dict):
        self._dir = state_dir
        self._state = state
        self._spec = None
        self._master = -1  # the pty master a foreground run relays
        self._notify = None  # a run's notify.Relay (NOTIFY_SOCKET)

    # -- reading --
    @property
    def id(self) -> str:
        return self._dir.id

    @property
    def pid(self) -> int:
        return self._state["pid"]

    @property
    def bundle(self) -> str:
        return self._state["bundle"]

    @property
    def spec(self) -> specmod.Spec:
        if self._spec is None:
            with open(os.path.join(self._dir.path, "config.json"), "rb") as f:
                from . import jsonio

                self._spec = specmod.Spec.parse(jsonio.loads(f.read()), self.bundle)
        return self._spec

    def status(self) -> str:
        """creating, created, running, paused or stopped (runtime.md "State")."""
        alive = self.pid > 0 and _alive(self.pid, self._state.get("start_time"))
        if self._state.get("status") == "creating":
            # a create still under way, or one whose runner died (delete --force cleans up)
            return "creating" if alive or self._creator_alive() else "stopped"
        if not alive:
            return "stopped"
        if os.path.exists(os.path.join(self._dir.path, FIFO)):
            return "created"
        if self._is_paused():
            return "paused"
        return "running"

    def _creator_alive(self) -> bool:
        return _alive(self._state.get("creator", 0), self._state.get("creator_start"))

    def _is_paused(self) -> bool:
        cg = self._cgroups()
        return cg.paused() if cg is not None else False

    def _cgroups(self):
        """The cgroup manager recorded in the state, if the container has one."""
        info = self._state.get("cgroups")
        if not info:
            return None
        from . import cgroups

        return cgroups.Manager.load(info)

    def state(self) -> dict:
        """The OCI state (runtime.md: ociVersion, id, status, pid, bundle, annotations) with
        runc's extra fields in runc's order and types: rootfs, created (RFC 3339 with
        nanoseconds, as Go prints a time), owner (a user name); annotations only when
        there are some (runc's omitempty)."""
        status = self.status()
        out = {
            "ociVersion": specmod.OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self._state.get("rootfs", ""),
            "created": self._state.get("created", ""),
        }
        annotations = self._state.get("annotations")
        if annotations:
            out["annotations"] = annotations
        out["owner"] = _owner_name(self._state.get("owner", ""))
        return out

    def _poststart_state(self) -> dict:
        """The state poststart hooks get: the container as `start` left it, running with
        its pid, even if a short process has exited already (as crun gives it)."""
        return dict(self.state(), status="running", pid=self.pid)

    def processes(self) -> list:
        """Host pids of every process in the container."""
        if self.status() == "stopped":
            return []
        cg = self._cgroups()
        if cg is not None:
            return sorted(cg.pids())
        return _pids_in_pid_namespace(self.pid)

    # -- lifecycle --
    def start(self, notify_socket: str = "") -> None:
        """Let a created container's init exec its process (`start`). With `notify_socket`
        (NOTIFY_SOCKET; the container was created with one too) return only once the
        process said READY=1 and the host's socket was told (notify.py), or it exited."""
        if not notify_socket:
            return self._start()
        from .notify import Relay

        relay = Relay(notify_socket, self._dir.path)
        try:
            relay.bind()  # before the process runs: it may notify at once
            self._start()
            relay.wait_ready(self.pid, self._state.get("start_time"), self.pid, _warn)
        finally:
            relay.close()

    @_serialised
    def _start(self) -> None:
        status = self.status()
        if status != "created":
            raise WrongState(f"cannot start container {self.id!r}: it is {status}, not created")
        if self.spec.process is None:
            # created without a process (config.md: required only now); its init only held
            # the container and can never run anything: it goes, the container is stopped
            self._kill_all(_quiet)
            raise ConfigError("process", "is not set in the container's config.json: there "
                                         "is nothing to start (the container is now stopped)")
        fifo = os.path.join(self._dir.path, FIFO)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        crash_point("start: exec fifo opened")
        try:
            import select

            p = select.poll()
            p.register(fd, select.POLLIN)
            deadline = time.monotonic() + START_TIMEOUT
            while not p.poll(100):
                if not _alive(self.pid, self._state.get("start_time")):
                    raise WrongState(f"cannot start container {self.id!r}: its init exited")
                self._check_not_held(time.monotonic() > deadline)
            os.read(fd, 1)
            crash_point("start: init released")
            os.unlink(fifo)  # not before: a start that failed leaves it created
        finally:
            os.close(fd)
        crash_point("start: exec fifo removed")
        self._state["status"] = "running"
        self._dir.write(self._state)
        crash_point("start: state running")
        _run_hooks(_hooks(self.spec.hooks, "poststart"), self._poststart_state, _warn)

    def _check_not_held(self, late: bool) -> None:
        """`start` waits for a live init that does not take the go: frozen or stopped by
        someone, it never will. Say so (at once when it is plain, else once `late`); the
        container stays created."""
        from .cgroups import frozen_elsewhere

        cg = self._cgroups()
        frozen = frozen_elsewhere([self.pid], cg.paths.get("freezer") if cg else None)
        st = _proc_stat(self.pid)
        why = (f"is frozen in the freezer cgroup {frozen[0][1]}" if frozen
               else "is stopped (SIGSTOP)" if st and st[0] in ("T", "t")
               else f"did not take the start within {START_TIMEOUT:g} s" if late else "")
        if why:
            raise ContainerError(f"cannot start container {self.id!r}: its init (pid "
                                 f"{self.pid}) {why}")

    def kill(self, sig: int = 15, all: bool = False) -> None:
        """Signal the init (or, with all, every process of the container)."""
        status = self.status()
        if status == "stopped":
            raise WrongState(f"cannot kill container {self.id!r}: container not running")
        if self.pid <= 0:
            # creating, its init not known yet: nothing to signal (and kill(0) would signal
            # our own process group, the caller's)
            raise WrongState(f"cannot kill container {self.id!r}: it is {status}, its "
                             "process does not exist yet")
        # Killing the init of a pid namespace of its own kills everything in it; without
        # one, SIGKILL must reach every process of the cgroup, or they outlive the init
        # (as runc does; without a cgroup nothing else is known to be the container's)
        own_pidns = any(n.type == "pid" and not n.path for n in self.spec.linux.namespaces)
        if sig == 9 and not own_pidns and self._cgroups() is not None:
            all = True
        pids = self.processes() if all else [self.pid]
        for pid in pids:
            if pid <= 0:
                continue
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig == 9 and status == "paused":
            # a frozen task takes SIGKILL only once thawed: kill means dead, not pending
            self._require_cgroups("kill").freeze(False)

    @_serialised
    def delete(self, force: bool = False, report=None, _parents: list | None = None) -> None:
        """Remove a stopped container and everything it owned. Without force, any other
        status is an error and nothing changes (the spec's MUST). Every wait is bounded: on
        an error the state stays, and a later delete --force finishes the job. `report`
        (a callable) is told each thing removed. (`_parents`: see cgroups.Manager.destroy;
        the background teardown keeps the shared parents a while.)"""
        report = report or _quiet
        status = self.status()
        if status != "stopped":
            if not force:
                raise WrongState(f"cannot delete container {self.id!r} that is not stopped: {status}")
            self._kill_all(report)
            crash_point("delete: processes killed")
        try:  # read before the state dir (and its config copy) goes
            raw = self.spec.hooks
        except (OSError, ValueError, ContainerError):
            raw = {}
        cg = self._cgroups()
        if cg is not None:
            if report is not _quiet and status == "stopped":  # --debug: what destroy kills
                left = sorted(cg.all_pids())
                if left:
                    report(f"killed {' '.join(map(str, left))}")
            _destroy(cg, report, _parents)
            crash_point("delete: cgroups removed")
        if _release_host_mounts(self._state):
            report(f"detached the mounts at {self._state['host_mounts']['path']}")
        if self._dir.remove():
            report(f"removed state directory {self._dir.path}")
        crash_point("delete: state dir removed")
        _run_hooks(_hooks(raw, "poststop"), lambda: dict(self.state(), status="stopped"),
                   _warn)

    def _kill_all(self, report) -> None:
        """SIGKILL every process of the container and wait until none is left, at most
        cgroups.KILL_TIMEOUT seconds (ContainerError then, and at once for a process frozen
        by someone else's freezer cgroup, which takes no signal before it is thawed)."""
        from .cgroups import KILL_TIMEOUT, frozen_elsewhere

        cg = self._cgroups()
        start = self._state.get("start_time")
        init = self.pid if self.pid > 0 and _alive(self.pid, start) else 0
        pids = set(cg.all_pids()) if cg is not None else set(self.processes())
        if init:
            pids.add(init)
        for pid in pids:
            if pid > 0:  # never kill(0): that is our own process group
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        try:
            if cg is not None:
                cg.kill_all()
            deadline = time.monotonic() + KILL_TIMEOUT
            while init and _alive(init, start):  # the init may be outside the cgroup
                stuck = frozen_elsewhere([init], (cg.paths if cg else {}).get("freezer"))
                if stuck or time.monotonic() > deadline:
                    raise ContainerError(
                        f"process {init} is frozen in the freezer cgroup {stuck[0][1]}, which "
                        f"is not the container's: it dies once thawed, then delete again"
                        if stuck else f"process {init} did not die within {KILL_TIMEOUT:g} s "
                                      "of SIGKILL")
                self._reap()
                time.sleep(0.005)
        except ContainerError as e:
            raise ContainerError(f"cannot delete container {self.id!r}: {e}") from None
        self._reap()
        if pids:
            report(f"killed {' '.join(map(str, sorted(pids)))}")

    def _reap(self) -> None:
        """The init of a container this process created is its child: reap it."""
        try:
            os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def wait(self) -> int:
        """Wait for the init to exit; only for a container this process created."""
        return exit_code(wait_pid(self.pid))

    @_serialised
    def pause(self) -> None:
        cg = self._require_cgroups("pause")
        status = self.status()
        if status != "running":
            raise WrongState(f"cannot pause container {self.id!r}: it is {status}")
        cg.freeze(True)

    @_serialised
    def resume(self) -> None:
        cg = self._require_cgroups("resume")
        status = self.status()
        if status != "paused":
            raise WrongState(f"cannot resume container {self.id!r}: it is {status}, not paused")
        cg.freeze(False)

    def _require_cgroups(self, verb: str):
        cg = self._cgroups()
        if cg is None:
            owner = self._state.get("owner", "0")
            why = (f" (uid {owner} created it, and no cgroup was delegated to that user)"
                   if owner not in ("0", "") else "")
            raise WrongState(f"cannot {verb} container {self.id!r}: it has no cgroup{why}")
        return cg

    # -- cgroups (libcontainer/cgroups; `update` and `events` verbs) --
    def cgroup(self, verb: str = "use the cgroup of"):
        """The container's cgroups.Manager (for stats and events)."""
        return self._require_cgroups(verb)

    @_serialised
    def update(self, resources: dict) -> None:
        """New limits (a linux.resources object, possibly partial) for a live container;
        the merged set is saved so that later updates and `events` see it."""
        cg = self._require_cgroups("update")
        status = self.status()
        if status == "stopped":
            raise WrongState(f"cannot update container {self.id!r}: it is stopped")
        cg.update(resources)
        self._state["cgroups"] = cg.state()
        self._dir.write(self._state)

    def exec(self, proc: specmod.Process, *, stdio=None, console_socket: str = "",
             detach: bool = False, pid_file: str = "", keep_fds: int = 0,
             sub_cgroups: dict | None = None):
        """Start another process in the running (or created) container: every namespace of
        the init is joined and its cgroup too, or the existing sub-cgroups `sub_cgroups`
        names (runc's exec --cgroup: {controller or "": path}). In the foreground returns
        the exit code; detached, the pid. (execute.py, loaded by an exec only.)"""
        from .execute import exec_in

        return exec_in(self, proc, stdio=stdio, console_socket=console_socket, detach=detach,
                       pid_file=pid_file, keep_fds=keep_fds, sub_cgroups=sub_cgroups)


def _pids_in_pid_namespace(init: int) -> list:
    """Without a cgroup, the container's processes are those in init's pid namespace —
    if it has one of its own; otherwise only init is known to be the container's."""
    try:
        ns = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return []
    if ns == os.readlink("/proc/self/ns/pid"):
        return [init]
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    pids.append(int(entry))
            except OSError:
                pass
    return sorted(pids)


def _hooks(raw: dict, stage: str = ""):
    """The config's hooks, parsed (stage → [Hook], or one stage's list). hooks.py is
    imported only when a config has some."""
    if not raw:
        return [] if stage else {}
    from .hooks import parse

    parsed = parse(raw)
    return parsed.get(stage, []) if stage else parsed


def _run_hooks(hooks: list, state, warn) -> None:
    """Run hooks whose failure is only a warning (poststart, poststop); `state` is called
    for the state JSON only if there is a hook to give it to."""
    if hooks:
        from .hooks import run

        run(hooks, _dumps(state()), strict=False, warn=warn)


def _dumps(obj) -> str:
    from . import jsonio

    return jsonio.dumps(obj)


def _warn(msg: str) -> None:
    """A warning of the library: to the `libcontainer` logger (see log.py)."""
    from .log import warning

    warning(msg)


# ---- create and run ---------------------------------------------------------------------

def load(container_id: str, root: str | None = None) -> Container:
    """The container `container_id` under `root` (default: state.default_root(), as for
    every function here); NotFound if there is none."""
    d = StateDir(root, container_id)
    if not d.exists():
        raise NotFound(f"container does not exist: {container_id}")
    return Container(d, d.read())


def list_containers(root: str | None = None) -> list:
    root = root or default_root()
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.startswith("."):
            continue  # a create or delete under way (see state.CREATING)
        try:
            out.append(load(name, root))
        except NotFound:
            continue  # deleted meanwhile, or not a container's directory
        except DamagedState as e:
            # shown, so that it can be found and deleted (delete --force)
            _warn(str(e))
            out.append(Container(StateDir(root, name),
                                 {"ociVersion": specmod.OCI_VERSION, "id": name,
                                  "status": "stopped", "pid": 0, "bundle": ""}))
        except ContainerError as e:
            _warn(str(e))
    return out


def create(bundle: str, container_id: str, *, root: str | None = None, stdio=None,
           console_socket: str = "", pid_file: str = "", no_pivot: bool = False,
           keep_fds: int = 0, new_keyring: bool = True, warn=None, listen_fds: int = 0,
           notify_socket: str = "", systemd_cgroup: bool = False, _start_now: bool = False,
           _foreground: bool = False) -> Container:
    """Set the container up and leave its init blocked before execve (status created).
    `stdio` is (stdin, stdout, stderr) as files, fds or None (keep this process's).
    `listen_fds` (socket activation): this process's fds 3.. are passed on, before the
    `keep_fds` ones, and LISTEN_FDS/LISTEN_PID say so. `notify_socket` (NOTIFY_SOCKET, the
    host's sd_notify socket): the process gets a socket of the runtime's (notify.py), which
    `start` relays. `systemd_cgroup` (runc's --systemd-cgroup): the cgroup is a transient
    systemd scope, linux.cgroupsPath "slice:prefix:name" (cgroups/systemd.py). Nothing is
    left behind if any step fails."""
    d = StateDir(root, container_id)
    if "teardown" in _loaded:  # this id's earlier run may still be being removed
        _loaded["teardown"].wait_for(root, container_id)
    spec, config_bytes = specmod.load_with_bytes(bundle)
    hooks = _hooks(spec.hooks)
    net_devices = _net_devices(spec)
    stdio = stdio_fds(stdio)
    if spec.process is not None and spec.process.terminal and not console_socket and not _foreground:
        raise InvalidArgument("process.terminal is true: a detached container needs --console-socket")
    if console_socket:
        from .terminal import check_console_socket

        check_console_socket(console_socket)
    # Intent before action: the cgroup directories are decided (and linux.resources
    # checked) now, and recorded with the first state, before any of them is made; so at
    # every instant delete --force can find from the state all that exists.
    cg = _plan_cgroups(spec, container_id, systemd_cgroup)
    me = _own_stat()
    state = {"ociVersion": specmod.OCI_VERSION, "id": container_id, "status": "creating",
             "pid": 0, "bundle": spec.bundle, "annotations": spec.annotations,
             "created": _rfc3339nano(time.time_ns()),
             "owner": _owner(), "rootfs": spec.root_path,
             "creator": os.getpid(), "creator_start": me[1] if me else None}
    if cg is not None:
        state["cgroups"] = cg.state()
    relay = None
    if notify_socket:
        from .notify import Relay

        relay = Relay(notify_socket, d.path)  # refuses a bad one before anything is made
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
        return _create(d, spec, state, cg, hooks, stdio, console_socket, pid_file, no_pivot,
                       keep_fds, new_keyring, warn, _start_now, _foreground, net_devices,
                       listen_fds, config_bytes, relay)
    finally:
        lock.__exit__(None, None, None)


_me: list = []


def _own_stat():
    """This process's (state, start time): read once, the start time never changes (a
    forked child of this process has its own pid, and reads its own)."""
    if not _me or _me[0] != os.getpid():
        _me[:] = [os.getpid(), _proc_stat(os.getpid())]
    return _me[1]


def _create(d, spec, state, cg, hooks, stdio, console_socket, pid_file, no_pivot, keep_fds,
            new_keyring, warn, _start_now, _foreground, net_devices, listen_fds,
            config_bytes: bytes, relay=None) -> Container:
    """create, once the state dir is claimed: the exec fifo, the cgroups, the plan, the
    host's part, the launch, the state. On any failure what was made is undone (_undo)."""
    talk = _Talk(d, spec, state, hooks, net_devices, console_socket, _foreground)
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
            plan = talk.plan = planmod.make(
                spec, no_pivot=no_pivot, keep_fds=keep_fds, start_fifo_fd=fifo_fd, hooks=hooks,
                new_keyring=new_keyring, warn=warn, listen_fds=listen_fds, cgroup=cg,
                node_dir=d.path)
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
            if pid_file:
                write_atomic(pid_file, str(started.pid))
                crash_point("create: pid file written")
            if master >= 0:
                setup_console(master, spec.process, console_socket)
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

    def __init__(self, d, spec, state, hooks, net_devices, console_socket, foreground):
        self.d, self.spec, self.state, self.hooks = d, spec, state, hooks
        self.net_devices, self.console_socket, self.foreground = (net_devices, console_socket,
                                                                  foreground)
        self.cg = None            # the cgroup once made
        self.plan = None
        self.parent_joins = False  # the parent moves the init into its cgroups
        self.cgroup_fd = -1
        self.master: list = []     # the console's pty master, when the init sends it
        self.hooks_ran: list = []  # non-empty once the runtime's hooks started (poststop owes them)

    def oci_state(self, pid: int, status: str = "creating") -> bytes:
        s = {k: self.state[k] for k in ("ociVersion", "id", "bundle", "annotations")}
        s.update(status=status, pid=pid)
        return _dumps(s).encode()

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
        _run_hooks(hooks.get("poststop", []),
                   lambda: dict({k: state[k] for k in ("ociVersion", "id", "bundle",
                                                        "annotations")},
                                status="stopped", pid=hooks_ran[0]), _warn)


def _release_host_mounts(state: dict) -> bool:
    """A container without a mount namespace mounted in ours: detach what it mounted."""
    if not state.get("host_mounts"):
        return False
    from . import hostmounts

    return hostmounts.release(state["host_mounts"])


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


def _plan_cgroups(spec, container_id: str, systemd: bool = False):
    """The container's cgroup, decided and checked (linux.resources: an error names the
    field); Manager.make creates and limits it before the container's process runs."""
    if systemd:
        from .cgroups.systemd import plan

        return plan(container_id, spec.linux.cgroups_path, spec.linux.resources,
                    devices=spec.linux.devices, annotations=spec.annotations)
    from . import cgroups

    return cgroups.Manager.plan(container_id, spec.linux.cgroups_path, spec.linux.resources,
                                devices=spec.linux.devices)


def _destroy(cg, report, parents: list | None = None) -> None:
    for d in cg.destroy(parents=parents):
        report(f"removed cgroup {d}")


def _quiet(msg: str) -> None:
    pass


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


def _owner() -> str:
    return str(os.geteuid())


def _owner_name(uid: str) -> str:
    """The stored owner uid as runc's list prints it: the user's name, "#uid" without one."""
    if not uid.isdigit():
        return uid
    import pwd

    try:
        return pwd.getpwuid(int(uid)).pw_name
    except KeyError:
        return "#" + uid


def _rfc3339nano(ns: int) -> str:
    """A UTC time as Go's time.Time marshals: RFC 3339, nanoseconds without trailing zeros."""
    secs, frac = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def run(bundle: str, container_id: str, *, root: str | None = None, no_pivot: bool = False,
        keep_fds: int = 0, stdio=None, detach: bool = False, console_socket: str = "",
        pid_file: str = "", new_keyring: bool = True, keep: bool = False, warn=None,
        listen_fds: int = 0, cleanup: str = "now", notify_socket: str = "",
        systemd_cgroup: bool = False):
    """create + start (+ wait and delete, in the foreground). Foreground: returns the exit
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
    warn = warn or _warn
    with Forwarder() as fwd:
        c = create(bundle, container_id, root=root, stdio=stdio, console_socket=console_socket,
                   pid_file=pid_file, no_pivot=no_pivot, keep_fds=keep_fds,
                   new_keyring=new_keyring, warn=warn, listen_fds=listen_fds,
                   notify_socket=notify_socket, systemd_cgroup=systemd_cgroup,
                   _start_now=True, _foreground=not detach)
        notifier = c._notify
        try:
            _run_hooks(_hooks(c.spec.hooks, "poststart"), c._poststart_state, warn)
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
