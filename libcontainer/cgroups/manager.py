"""One container's cgroup: its directory in every hierarchy, the limits applied before
its process exists, joining, freezing, killing everything in it, removing it."""
from __future__ import annotations

import os
import time

from . import fs, unset, v1, v2, validate
from .host import Host, _inner, check_path, detect
from .tree import (_alive, _cpuset_fill, _freeze_flag, _rmdir, _sub_dir, _tree_procs,
                   frozen_elsewhere, spares_taken)
from .writes import _assign, _field_of_ctrl, _plan_writes, _v2_needed
from ..errors import ConfigError
from ..state import crash_point
from ..userns import rootless

KILL_TIMEOUT = 10.0  # seconds a killed container's processes may take to die (runc: 10 s)
V2_ENABLE = ("cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc")


class Manager:
    """One container's cgroup: a directory per v1 hierarchy and/or one v2 directory."""

    needs_pid = False  # True: made only once the init exists (systemd.SystemdManager)

    def __init__(self, st: dict):
        self.mode: str = st["mode"]
        self.paths: dict = st["paths"]        # v1 controller → directory
        self.unified: str = st.get("unified", "")
        self.created: list = st.get("created", [])
        self.groups: dict = st.get("groups", {})  # resource group → "v1" | "v2"
        self.resources: dict = st.get("resources", {})
        # the paths of linux.devices (a listed default device loses its default rule);
        # states of earlier versions hold [type, major, minor] lists here: not paths
        self.devices: list = [d for d in st.get("devices", []) if isinstance(d, str)]

    # ---- creation -------------------------------------------------------------------

    @classmethod
    def create(cls, container_id: str, cgroups_path: str = "", resources: dict | None = None,
               devices=(), host: Host | None = None) -> "Manager | None":
        """Create the cgroup and apply `resources` (linux.resources); on any error nothing
        is left and the error names the field (and the file)."""
        m = cls.plan(container_id, cgroups_path, resources, devices, host)
        return m if m is not None and m.make() else None

    @classmethod
    def plan(cls, container_id: str, cgroups_path: str = "", resources: dict | None = None,
             devices=(), host: Host | None = None,
             controllers: "tuple[str, ...]" = ()) -> "Manager | None":
        """Validate `resources` and decide every directory, making nothing yet. `created`
        lists the directories make() will create (those missing now): recorded in the state
        before make(), they let delete --force find all of it after a crash at any point.
        None: a rootless runtime with no cgroup delegated to it, and no limits asked.
        `controllers`: the v1 hierarchies to join (devices always); empty: every one, as
        runc (each is a mkdir, a join and an rmdir per container)."""
        res = unset.strip(validate.resources(resources or {}))
        check_path(cgroups_path)
        host = host or detect()
        if not host.v1 and not host.unified:
            raise ConfigError("linux.resources", "no cgroup hierarchy is mounted on this host "
                                                 "(or every one is covered by another mount)")
        groups = _assign(host, res)
        writes = _plan_writes(host, res, groups)
        m = cls._layout(host, container_id, cgroups_path, groups, res, devices)
        if controllers:
            keep = set(controllers) | {"devices"}  # the device rules hold in any case
            for g, where in groups.items():
                if where == "v1" and g not in keep:
                    raise ConfigError(_field_of_ctrl(g), f"the {g} cgroup is needed for this "
                                      f"limit, and not among the controllers asked for "
                                      f"({', '.join(sorted(keep))})")
            m.paths = {c: p for c, p in m.paths.items() if c in keep}
        if rootless():
            # only what is delegated to this user; nothing at all is runc's rootless default
            from .delegation import restrict

            m.paths, m.unified = restrict(host, m.paths, m.unified, groups, writes, cgroups_path)
            if not m.paths and not m.unified:
                return None
        m._host, m._writes = host, writes
        for d, mnt in m._mounts(host).items():
            chain = []
            while d != mnt and not os.path.isdir(d):
                chain.append(d)
                d = os.path.dirname(d)
            m.created += reversed(chain)
        return m

    @classmethod
    def named(cls, container_id: str, cgroups_path: str = "") -> "Manager":
        """The directories a container of this ID has where they exist, as `created`: for
        delete --force when no state says what the container made."""
        check_path(cgroups_path)
        host = detect()
        m = cls._layout(host, container_id, cgroups_path, {}, {}, ())
        m.created = [d for d in m._dirs() if os.path.isdir(d)]
        if rootless():  # another user's (root's) directories of the same name stay
            m.created = [d for d in m.created if os.access(os.path.dirname(d), os.W_OK)]
        return m

    @classmethod
    def _layout(cls, host: Host, container_id: str, cgroups_path: str, groups: dict,
                res: dict, devices) -> "Manager":
        paths = {}
        for ctrl, mnt in host.v1.items():
            paths[ctrl] = mnt + _inner(cgroups_path, container_id, host.own.get(ctrl, "/"), False)
        unified = ""
        if host.unified:
            unified = host.unified + _inner(cgroups_path, container_id, host.own.get("", "/"),
                                           True)
        return cls({"mode": host.mode, "paths": paths, "unified": unified, "created": [],
                    "groups": groups, "resources": res,
                    "devices": [d.path for d in devices]})

    def make(self) -> bool:
        """Create the planned directories and apply the limits. On an error nothing is left
        and the error names the field. Always True (a rootless runtime without delegated
        cgroups gets no Manager from plan() at all): kept for callers that test it."""
        host, writes = self._host, self._writes
        intended = list(self.created)
        try:
            self._make_dirs(host, _v2_needed(writes, self.groups))
            self._check_not_frozen(host)
            # rootless, device rules are not enforced: no node can be created in a user
            # namespace, the host's bound nodes keep their host permissions, and the v2
            # device program needs CAP_SYS_ADMIN
            self._apply(writes, self.groups, self.resources, devices=not rootless(),
                        fresh=True)
        except BaseException:
            self.created = list(dict.fromkeys(intended + self.created))
            self.destroy(kill=False)  # nothing of the container runs yet: kill nobody
            raise
        return True

    def _dirs(self) -> list:
        """Every directory of the container (v1 ones once each, then v2)."""
        out = list(dict.fromkeys(self.paths.values()))
        if self.unified:
            out.append(self.unified)
        return out

    def _mounts(self, host: Host) -> dict:
        """Each directory → the mount point of its hierarchy."""
        mounts = {self.paths[c]: m for c, m in host.v1.items() if c in self.paths}
        if self.unified:
            mounts[self.unified] = host.unified
        return mounts

    def _make_dirs(self, host: Host, v2_needed: set) -> None:
        """mkdir what plan() found missing. A directory missing now that was there then
        (another container's delete removed a shared parent) is added to `created`."""
        mounts = self._mounts(host)
        planned = set(self.created)
        renamed = spares_taken(self, host)
        for d in self._dirs():
            mnt = mounts[d]
            if d not in planned and os.path.isdir(d):
                self._check_reusable(d)  # the config's, made by someone else
            chain = []
            cur = d
            while cur != mnt:
                chain.append(cur)
                cur = os.path.dirname(cur)
            for sub in reversed(chain):
                if sub != d and sub not in planned:
                    continue  # there at plan(); if gone since, d's mkdir says so (ENOENT)
                if sub in renamed:
                    crash_point(f"cgroup made: {sub}")
                    continue
                for attempt in range(20):
                    try:
                        os.mkdir(sub, 0o755)
                    except FileExistsError:
                        break
                    except FileNotFoundError:
                        # a parent we saw was removed by another container's delete: make
                        # the missing ones, top down, and try again
                        missing = []
                        parent = os.path.dirname(sub)
                        while parent != mnt and not os.path.isdir(parent):
                            missing.append(parent)
                            parent = os.path.dirname(parent)
                        for parent in reversed(missing):
                            try:
                                os.mkdir(parent, 0o755)
                                if parent not in planned:
                                    # before its children: destroy() goes backwards
                                    at = next((i for i, c in enumerate(self.created)
                                               if c.startswith(parent + "/")),
                                              len(self.created))
                                    self.created.insert(at, parent)
                            except FileExistsError:
                                pass
                            except FileNotFoundError:
                                break  # removed again meanwhile: the next attempt sees it
                        continue
                    except OSError as e:
                        raise ConfigError("linux.cgroupsPath",
                                          f"creating {sub}: {e.strerror}") from None
                    if sub not in planned:
                        self.created.append(sub)
                    crash_point(f"cgroup made: {sub}")
                    break
            if mnt == host.v1.get("cpuset") and d not in renamed:  # a spare is filled
                _cpuset_fill(chain[::-1], set(self.created))
            if d == self.unified:
                self._enable_v2(host, mnt, chain, v2_needed)

    def _check_not_frozen(self, host: Host) -> None:
        """A cgroup frozen already (the config's, made and frozen by someone else, or a new
        one under a frozen parent) would hold the init before it could say a word: refuse
        at once, as runc does, instead of a setup timeout. Not looked at: a directory made
        just now below our own cgroup or one of its ancestors (the default place), which
        are not frozen, since this process runs."""
        for d, mnt, own, frozen in (
                (self.paths.get("freezer"), host.v1.get("freezer"), host.own.get("freezer", "/"),
                 v1.frozen),
                (self.unified, host.unified, host.own.get("", "/"),
                 lambda d: v2.frozen(d) or _freeze_flag(d))):
            if d and not self._under_own(d, mnt, own) and frozen(d):
                raise ConfigError("linux.cgroupsPath", f"{d} is frozen: the container could "
                                  "not start (thaw it first)")

    def _under_own(self, d: str, mnt: str, own: str) -> bool:
        """`d` was made just now, below the first existing ancestor, which is our own
        cgroup or one of its ancestors."""
        if d not in self.created:
            return False
        top = os.path.dirname(d)
        while top in self.created:
            top = os.path.dirname(top)
        mine = os.path.normpath(mnt + own)
        return mine == top or mine.startswith(top + "/")

    def _check_reusable(self, d: str) -> None:
        if (v1.procs(d) if d != self.unified else v2.procs(d)):
            raise ConfigError("linux.cgroupsPath", f"{d} already has processes in it")

    def _enable_v2(self, host: Host, mnt: str, chain: list, needed: set) -> None:
        """Controllers reach a cgroup only through every ancestor's subtree_control. In
        directories we created, all available ones are enabled on a pure v2 host (for later
        updates and stats); in ancestors that are not ours, only what the config needs."""
        for parent in [os.path.dirname(c) for c in reversed(chain)]:
            ours = parent in self.created
            want = set(needed)
            if ours and host.mode == "v2":
                want |= v2.controllers(parent) & set(V2_ENABLE)
            if not want:
                continue
            missing = want - v2.controllers(parent)
            if missing:
                ctrl = sorted(missing)[0]
                raise ConfigError(_field_of_ctrl(ctrl), f"the {ctrl} controller is not available "
                                  f"in {parent}/cgroup.controllers")
            try:
                v2.enable(parent, want)
            except OSError as e:
                raise ConfigError(_field_of_ctrl(sorted(want)[0]),
                                  f"enabling {' '.join(sorted(want))} in "
                                  f"{parent}/cgroup.subtree_control: {e.strerror}") from None

    def _apply(self, plan: dict, groups: dict, res: dict, devices: bool,
               fresh: bool = False) -> None:
        for group, writes in plan.items():
            if group.startswith("unified:"):
                fs.apply(self.unified, writes)
            elif groups.get(group) == "v1":
                fs.apply(self.paths[group], writes)
            else:
                fs.apply(self.unified, writes)
        if devices:
            self._apply_devices(res, fresh)

    def _apply_devices(self, res: dict, fresh: bool = False) -> None:
        from . import devices as dev

        rules = dev.rules(res, self.devices)
        if "devices" in self.paths:
            d = self.paths["devices"]
            dev.v1_writes(rules, d, fresh=fresh and d in self.created)
        elif self.unified:
            try:
                dev.install(self.unified, rules)
            except OSError as e:
                raise ConfigError("linux.resources.devices",
                                  f"attaching the device program to {self.unified}: {e}") from None

    # ---- the process ------------------------------------------------------------------

    def clone_fd(self) -> int:
        """An fd of the v2 directory for clone3(CLONE_INTO_CGROUP), -1 without v2."""
        if not self.unified:
            return -1
        return os.open(self.unified, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def sub_dirs(self, sub: dict) -> list:
        """The directories `exec --cgroup` puts a process in: {"": PATH} is PATH below the
        container's cgroup in every hierarchy; {controller: PATH} below that controller's
        (the others stay the container's). Each must exist, and stay below the container's."""
        if "" in sub:
            out = [_sub_dir(d, sub[""]) for d in self._dirs()]
        else:
            unknown = sorted(set(sub) - set(self.paths))
            if unknown:
                raise ConfigError("--cgroup", f"unknown controller {unknown[0]} (the container's "
                                  f"are: {', '.join(sorted(self.paths))})")
            by_dir: dict = {}
            for ctrl, d in self.paths.items():
                by_dir.setdefault(d, d)
                if ctrl in sub:
                    by_dir[d] = _sub_dir(d, sub[ctrl])
            out = list(by_dir.values()) + ([self.unified] if self.unified else [])
        for d in out:
            if not os.path.isdir(d):
                raise ConfigError("--cgroup", f"{d} does not exist: the sub-cgroup must be "
                                  "made first")
        return out

    def join(self, pid: int, v2_too: bool = True, dirs: list | None = None) -> None:
        """Move `pid` into every directory (v2 only when it was not cloned there), or into
        `dirs` (see sub_dirs)."""
        for d in dirs if dirs is not None else self._dirs():
            if d == self.unified and not v2_too:
                continue
            try:
                fs.write(os.path.join(d, "cgroup.procs"), str(pid))
            except OSError as e:
                why = ""
                if e.errno in (1, 13) and d == self.unified and rootless():
                    why = (" (unprivileged, the runner must itself run inside the subtree "
                           "delegated to it: the kernel moves a process only below a common "
                           "ancestor whose cgroup.procs the mover may write)")
                raise OSError(e.errno, f"adding {pid} to {d}/cgroup.procs: "
                                       f"{e.strerror}{why}") from None

    def self_join_files(self) -> list:
        """The v1 `tasks` files a new process writes "0" to, to join by itself (see the
        shim: cheaper than join(pid)). The v2 directory is joined by clone3."""
        return [os.path.join(d, "tasks") for d in dict.fromkeys(self.paths.values())]

    def pids(self) -> list:
        """Every process in the container's cgroup."""
        if self.unified and self.mode == "v2":
            return _tree_procs(self.unified)
        d = self.paths.get("pids") or self.paths.get("freezer") or self._dirs()[0]
        return _tree_procs(d)

    # ---- freezer ----------------------------------------------------------------------

    def freeze(self, frozen: bool) -> None:
        """Pause (or resume) every process; returns once the kernel reports it done."""
        try:
            if "freezer" in self.paths:
                v1.freeze(self.paths["freezer"], frozen)
            elif self.unified:
                v2.freeze(self.unified, frozen)
            else:
                raise OSError(95, "no freezer: neither v1 freezer nor cgroup v2")
        except OSError as e:
            from ..errors import ContainerError

            raise ContainerError(f"{'pausing' if frozen else 'resuming'}: {e}") from None

    def paused(self) -> bool:
        if "freezer" in self.paths:
            return v1.frozen(self.paths["freezer"])
        return bool(self.unified) and v2.frozen(self.unified)

    # ---- update -----------------------------------------------------------------------

    def update(self, resources: dict, host: Host | None = None) -> None:
        """Apply new values for some resources to the running container; the rest stay.
        All or nothing: see update.py."""
        from .update import update

        update(self, resources, host)

    # ---- teardown ---------------------------------------------------------------------

    def kill_all(self, timeout: float | None = None) -> None:
        """SIGKILL everything in the cgroup (cgroup.kill where the kernel has it, else
        freeze, kill, thaw, so that nothing forks past the kill) and wait until it is
        empty. A bounded wait: ContainerError naming what is left after `timeout` seconds,
        and at once for a process frozen by a v1 freezer cgroup that is not ours (it takes
        no signal before someone thaws it)."""
        if self.unified and _v2_empty(self.unified):
            # nothing left (frozen tasks count as populated): the usual end of a run
            return
        freezer = self.paths.get("freezer")
        if freezer and os.path.isdir(freezer) and v1.frozen(freezer):
            # a task frozen by our own freezer takes no signal until thawed (and a thaw
            # after cgroup.kill would let it fork first)
            v1.freeze(freezer, False)
        if not (self.unified and os.path.isdir(self.unified) and v2.kill_all(self.unified, 0)):
            d = freezer or self.paths.get("pids") or (self._dirs() or [""])[0]
            if d and os.path.isdir(d):
                v1.kill_all(d, freezer if freezer and os.path.isdir(freezer) else None)
        timeout = KILL_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            if not self._populated():
                return
            left = [p for p in self.all_pids() if _alive(p)]
            if not left:
                return
            for pid in left:  # moved out of the hierarchy killed above by someone
                if pid <= 0:
                    continue
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            stuck = frozen_elsewhere(left, freezer)
            if stuck or time.monotonic() > deadline:
                from ..errors import ContainerError

                if stuck:
                    pid, where = stuck[0]
                    raise ContainerError(
                        f"process {pid} is frozen in the freezer cgroup {where}, which is not "
                        f"the container's: it dies once thawed (write THAWED to "
                        f"{where}/freezer.state), then delete again")
                raise ContainerError(f"processes {' '.join(map(str, sorted(left)))} of the "
                                     f"container did not die within {timeout:g} s of SIGKILL")
            _until_exit(left, delay)
            delay = min(delay * 2, 0.05)

    def _populated(self) -> bool:
        """Whether any process may be left: one read of the v2 directory's `populated`
        where there is one (exited processes, zombies too, are not counted), else the
        processes of one v1 directory's tree."""
        if self.unified:
            ev = v2.events(self.unified)
            if "populated" in ev:
                return ev["populated"] == 1
        d = self.paths.get("pids") or self.paths.get("freezer") or (self._dirs() or [""])[0]
        return bool(d and _tree_procs(d))

    def all_pids(self) -> set:
        """Every process in any of the container's directories (a process moved out of
        one hierarchy by someone else is still found in the others)."""
        out = set()
        for d in self._dirs():
            if os.path.isdir(d):
                out.update(_tree_procs(d))
        return out

    def destroy(self, kill: bool = True, parents: list | None = None) -> list:
        """Kill what is left and remove every directory this manager created; returns
        those that were there to remove. With a `parents` list, the shared parents (not
        the container's own directories) are put there instead, for the caller to remove
        later (remove_parent)."""
        if kill:
            self.kill_all()
        leaves = set(self._dirs())
        removed = []
        for d in reversed(self.created):
            if parents is not None and d not in leaves:
                parents.append(d)
                continue
            if _rmdir(d, d in leaves):
                removed.append(d)
            crash_point(f"cgroup removed: {d}")
        self.created = []
        return removed

    def close(self) -> None:
        """Release what the manager holds open (the systemd manager's D-Bus connection)."""

    def state(self) -> dict:
        return {"mode": self.mode, "paths": self.paths, "unified": self.unified,
                "created": self.created, "groups": self.groups, "resources": self.resources,
                "devices": self.devices}

    @classmethod
    def load(cls, st: dict) -> "Manager":
        """This class's manager from its state(); the package's `load()` picks the class."""
        return cls(st)

    def stats(self) -> dict:
        from . import stats

        return stats.collect(self)


def _v2_empty(d: str) -> bool:
    """The v2 directory `d` holds no live process (False when it cannot be read)."""
    try:
        return v2.events(d).get("populated") == 0
    except OSError:
        return False


def _until_exit(pids: list, delay: float) -> None:
    """Sleep `delay`, or less: with one process left (the usual case, the init), until it
    exits: its pidfd polls readable then. A SIGKILLed process dies when it next gets a CPU,
    at any point of a doubling delay; a loaded machine's few ms each time were most of a
    `delete -f` otherwise."""
    if len(pids) == 1 and hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pids[0])
        except ProcessLookupError:
            return
        except OSError:  # no pidfds here (Linux < 5.3, a seccomp filter)
            time.sleep(delay)
            return
        try:
            import select

            select.select([fd], [], [], delay)
        finally:
            os.close(fd)
        return
    time.sleep(delay)
