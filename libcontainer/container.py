"""A container known to the state directory (runtime.md): its state, start, kill, pause,
delete; `load` and `list_containers` read it back. Making one (`create`, `run`) is
creation.py's, exec execute.py's, `delete --force` of what no state describes recovery.py's."""
from __future__ import annotations

import os
import sys
import time

from . import spec as specmod
from .errors import ConfigError, ContainerError, DamagedState, NotFound, WrongState
from .listing import FIFO, damaged, is_paused, oci_state, status_of
from .state import StateDir, crash_point, default_root
from .state import alive as _alive, proc_stat as _proc_stat

__all__ = ["Container", "load", "list_containers", "NotFound"]

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
        return status_of(self._state, f"{self._dir.path}/{FIFO}")

    def _is_paused(self) -> bool:
        return is_paused(self._state)

    def _cgroups(self):
        """The cgroup manager recorded in the state, if the container has one."""
        info = self._state.get("cgroups")
        if not info:
            return None
        from . import cgroups

        return cgroups.load(info)

    def state(self, owner_names: dict | None = None) -> dict:
        """The OCI state with runc's extra fields (listing.oci_state)."""
        return oci_state(self._state, self.id, self.status(), owner_names)

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
        if self.spec.hooks:
            from . import hooks

            hooks.run_quietly(hooks.for_stage(self.spec.hooks, "poststart"),
                              self._poststart_state, _warn)

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
        if raw:
            from . import hooks

            hooks.run_quietly(hooks.for_stage(raw, "poststop"),
                              lambda: dict(self.state(), status="stopped"), _warn)

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
        """The init of a container this process created is its child: reap it (through
        launch.PARENT, which a warm server's worker points at its caller)."""
        launch = sys.modules.get("libcontainer.launch")
        try:
            if launch is not None:
                launch.PARENT.waitpid(self.pid, os.WNOHANG)
            else:
                os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def wait(self) -> int:
        """Wait for the init to exit; only for a container this process created."""
        from .launch import exit_code, wait_pid  # (the shim: `state`, `kill` need none of it)

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


def _warn(msg: str) -> None:
    """A warning of the library: to the `libcontainer` logger (see log.py)."""
    from .log import warning

    warning(msg)


def load(container_id: str, root: str | None = None) -> Container:
    """The container `container_id` under `root` (default: state.default_root(), as for
    every function here); NotFound if there is none."""
    d = StateDir(root, container_id)
    try:
        return Container(d, d.read())  # (no stat first: read says when there is none)
    except NotFound:
        raise NotFound(f"container does not exist: {container_id}") from None


def list_containers(root: str | None = None) -> list:
    """Every container under `root`, sorted by ID. (The CLI's `list` reads only what it
    shows, without a Container each: listing.iter_states.)"""
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
            out.append(Container(StateDir(root, name), damaged(name)))
        except ContainerError as e:
            _warn(str(e))
    return out


def _release_host_mounts(state: dict) -> bool:
    """A container without a mount namespace mounted in ours: detach what it mounted."""
    if not state.get("host_mounts"):
        return False
    from . import hostmounts

    return hostmounts.release(state["host_mounts"])


def _destroy(cg, report, parents: list | None = None) -> None:
    for d in cg.destroy(parents=parents):
        report(f"removed cgroup {d}")


def _quiet(msg: str) -> None:
    pass
