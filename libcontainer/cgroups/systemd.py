"""`--systemd-cgroup`: the container in a transient systemd scope, as runc does it.

linux.cgroupsPath is "slice:prefix:name" (empty: system.slice, runner-<id>.scope). The
unit is started over D-Bus (StartTransientUnit: Delegate=yes, the init's pid, the slice,
DefaultDependencies=no and the resource properties, sdprops.py), then — exactly as with
cgroupfs — the cgroup files are written and the init joined in every hierarchy, where
systemd made the directories or not (systemd 252 on a hybrid host runs only some v1
controllers). A unit property is written by systemd again at each daemon-reload: that is
why every limit it has a property for is sent as one. A slice that does not exist is made
by systemd itself, with its dash-nested parents.

The scope needs a process, so the cgroup is made once the init exists and before it runs
anything of the container's (the parent joins it: `needs_pid`), where cgroupfs makes it
before the clone. `delete` (and a failed create) stops the unit and removes the directories
systemd does not remove itself.
"""
from __future__ import annotations

import os

from .host import detect
from .manager import Manager
from .tree import _cpuset_fill, _rmdir, _tree_procs
from .writes import _assign, _merge, _plan_writes, _v2_needed
from . import sdprops, unset, validate
from ..errors import ConfigError
from ..userns import rootless


def _init_cgroup(ctrl: str) -> str:
    """PID 1's cgroup in a v1 hierarchy ("" the unified one), without init.scope: where
    systemd's tree starts (runc's getSubsystemPath)."""
    try:
        with open("/proc/1/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if (ctrl in ctrls.split(",")) if ctrl else not ctrls:
                    path = os.path.normpath(path)
                    if path.endswith("/init.scope"):
                        path = path[:-len("/init.scope")]
                    elif path == "/init.scope":
                        path = "/"
                    return path or "/"
    except OSError:
        pass
    return "/"


class SystemdManager(Manager):
    """A Manager whose cgroup is a systemd unit's."""

    needs_pid = True

    def __init__(self, st: dict):
        super().__init__(st)
        sd = st["systemd"]
        self.unit: str = sd["unit"]
        self.slice: str = sd["slice"]
        self.name: str = sd["name"]
        self.user: bool = sd.get("user", False)
        self.started = sd.get("started", True)
        self._bus = None

    def state(self) -> dict:
        st = super().state()
        st["systemd"] = {"unit": self.unit, "slice": self.slice, "name": self.name,
                         "user": self.user}
        return st

    def bus(self):
        if self._bus is None:
            from .sdbus import Systemd

            self._bus = Systemd(self.user)
        return self._bus

    # ---- creation -------------------------------------------------------------------

    @classmethod
    def plan(cls, container_id: str, cgroups_path: str = "", resources: dict | None = None,
             devices=(), host=None, annotations: dict | None = None) -> "SystemdManager":
        """Check the path and resources, reach systemd, and decide every directory; nothing
        is made (a bad path or an unreachable systemd leaves nothing)."""
        slice_, prefix, name = sdprops.parse_path(cgroups_path, container_id)
        extra = sdprops.annotation_properties(annotations or {})
        res = unset.strip(validate.resources(resources or {}))
        host = host or detect()
        if not host.v1 and not host.unified:
            raise ConfigError("linux.resources", "no cgroup hierarchy is mounted on this host")
        user = rootless()
        if user and host.mode != "v2":
            raise ConfigError("--systemd-cgroup", "rootless systemd cgroups need cgroup v2 "
                                                  "(as runc: a user's systemd delegates no v1 "
                                                  "controller)")
        slice_ = slice_ or ("user.slice" if user else "system.slice")
        unit = sdprops.unit_name(prefix, name)
        expanded = sdprops.expand_slice(slice_)
        groups = _assign(host, res)
        writes = _plan_writes(host, res, groups)
        m = cls({"mode": host.mode, "paths": {}, "unified": "", "created": [],
                 "groups": groups, "resources": res, "devices": [d.path for d in devices],
                 "systemd": {"unit": unit, "slice": slice_, "name": name, "user": user}})
        bus = m.bus()  # ConfigError naming --systemd-cgroup if systemd is not there
        try:
            # rootless too, as runc: the user's systemd takes DevicePolicy/DeviceAllow
            # (the unit keeps them; a user manager attaches no device program)
            m._props = sdprops.resource_properties(res, host.mode, bus.version(), m.devices)
            if host.mode == "v2":
                base = expanded
                if user:  # the user's manager's own cgroup: user@UID.service
                    base = str(bus.property("ControlGroup")).rstrip("/") + expanded
                m.unified = os.path.normpath(f"{host.unified}/{base}/{unit}")
            else:
                for ctrl, mnt in host.v1.items():
                    m.paths[ctrl] = os.path.normpath(
                        f"{mnt}/{_init_cgroup(ctrl)}/{expanded}/{unit}")
                if host.unified:
                    m.unified = os.path.normpath(
                        f"{host.unified}/{_init_cgroup('')}/{expanded}/{unit}")
        except BaseException:
            m.close()
            raise
        m.created = m._dirs()  # the leaves: delete removes what systemd did not
        m._host, m._writes, m._extra = host, writes, extra
        m.started = False
        return m

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    def make(self) -> bool:
        """Nothing before the init exists: the unit needs its pid (see join)."""
        return True

    def clone_fd(self) -> int:
        return -1  # the directory does not exist before the unit does

    def self_join_files(self) -> list:
        return []

    def join(self, pid: int, v2_too: bool = True, dirs: list | None = None) -> None:
        """The first join (the init, before it runs the container's code) starts the unit
        with it, makes what systemd did not and applies every limit; later ones (exec) only
        join."""
        if self.started or dirs is not None:
            try:
                return super().join(pid, v2_too, dirs)
            except PermissionError as e:
                if not (self.user and self.unified):
                    raise
                self._attach(pid, dirs, e)
                return
        host = self._host
        bus = self.bus()
        props = sdprops.base_properties(self.unit, self.slice, self.name, pid, self.mode)
        bus.start_transient_unit(self.unit, props + self._extra)
        self.started = True
        try:
            if self._props:  # as runc: the limits by Set, after Apply (the unit's drop-ins)
                bus.set_unit_properties(self.unit, self._props)
            for d, mnt in self._mounts(host).items():
                chain, cur = [], d
                while cur != mnt and cur != "/":
                    chain.append(cur)
                    cur = os.path.dirname(cur)
                made = set()
                for sub in reversed(chain):
                    try:
                        os.mkdir(sub, 0o755)
                        made.add(sub)
                    except FileExistsError:
                        pass
                    except OSError as e:
                        raise ConfigError("linux.cgroupsPath",
                                          f"creating {sub}: {e.strerror}") from None
                if mnt == host.v1.get("cpuset"):
                    _cpuset_fill(chain[::-1], made)
                if d == self.unified and not self.user:
                    self._enable_v2(host, mnt, chain, _v2_needed(self._writes, self.groups))
            self._apply(self._writes, self.groups, self.resources, devices=not self.user,
                        fresh=True)
            super().join(pid, True)
        finally:
            self.close()

    def _attach(self, pid: int, dirs: list | None, error: OSError) -> None:
        """Rootless, a process (exec's) started outside the user's delegated subtree: the
        kernel lets no one but a writer of the common ancestor move it, so the user's
        systemd does it (asking the system's), as it did for the init. runc 1.1 leaves such
        a process outside the container's cgroup, escaping its limits."""
        target = self.unified if dirs is None else next(
            (d for d in dirs if d.startswith(self.unified)), self.unified)
        sub = os.path.relpath(target, self.unified)
        from .sdbus import DBusError

        try:
            self.bus().attach(self.unit, pid, "" if sub == "." else "/" + sub)
        except (DBusError, ConfigError) as e:
            raise OSError(error.errno, f"{error}; nor could systemd attach it to {self.unit}: "
                                       f"{e}") from None
        finally:
            self.close()

    # ---- update -----------------------------------------------------------------------

    def update(self, resources: dict, host=None) -> None:
        """Every check first (fields, controllers, files: an update that cannot be applied
        changes nothing, not even the unit), then SetUnitProperties (systemd writes its
        files and keeps the values over a daemon-reload), then the cgroup files as
        cgroupfs does (all or nothing); if those fail, the unit gets back the values it
        had for each property sent, read from systemd before."""
        from .update import prepare

        host = host or detect()
        res = unset.strip(validate.resources(resources))
        write = prepare(self, resources, host)
        merged = _merge(self.resources, res)
        bus = self.bus()
        try:
            new = sdprops.resource_properties(merged, host.mode, bus.version(), self.devices,
                                              devices="devices" in res)
            had = bus.unit_properties(self.unit)
            bus.set_unit_properties(self.unit, new)
            try:
                write()
            except BaseException:
                old = [(name, had[name]) for name, _ in new if name in had]
                try:
                    bus.set_unit_properties(self.unit, old)
                except Exception:
                    pass
                raise
        finally:
            self.close()

    # ---- teardown ---------------------------------------------------------------------

    def _populated(self) -> bool:
        if self.unified and not os.path.isdir(self.unified):
            # systemd removed the scope's v2 directory (the scope ends with its last
            # process): look at a v1 one, if any is left
            d = self.paths.get("pids") or self.paths.get("freezer") or next(
                iter(self.paths.values()), "")
            return bool(d and os.path.isdir(d) and _tree_procs(d))
        return super()._populated()

    def destroy(self, kill: bool = True, parents: list | None = None) -> list:
        """Kill what is left, stop the unit (systemd removes its directories), and remove
        those it did not make (controllers it does not run). A unit this manager did not
        start (a create that failed before, or found the name taken by another's) is left
        alone, and so is everything in it."""
        if not self.started:
            self.close()
            self.created = []
            return []
        if kill:
            self.kill_all()
        removed = []
        if self.started:
            try:
                if self.bus().stop_unit(self.unit):
                    removed.append(self.unit)
            finally:
                self.close()
        self.close()
        for d in reversed(self.created):
            if _rmdir(d, True):
                removed.append(d)
        self.created = []
        return removed

    @classmethod
    def named(cls, container_id: str, cgroups_path: str = "") -> "SystemdManager":
        """For delete --force without a state: the unit and directories of that name."""
        m = cls.plan(container_id, cgroups_path)
        m.started = m.bus().unit_exists(m.unit)
        m.created = [d for d in m._dirs() if os.path.isdir(d)]
        return m


def plan(container_id: str, cgroups_path: str, resources, devices=(),
         annotations: dict | None = None) -> SystemdManager:
    return SystemdManager.plan(container_id, cgroups_path, resources, devices,
                               annotations=annotations)
