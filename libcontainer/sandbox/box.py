"""The Sandbox: an image made ready once (its layers, its config, the user), then runs,
each in a fresh container over a fresh writable layer, with limits, returning a Result."""
from __future__ import annotations

import atexit
import contextlib
import itertools
from typing import TYPE_CHECKING, Iterator
import os
import threading
import time
import weakref

from .. import creation
from ..request import CreateRequest
from ..errors import ContainerError, ExecNotFound, InvalidArgument, StartError
from . import config as configs, hostfs
from .limits import Limits
from .result import Result
from .supervise import Counters, supervise

if TYPE_CHECKING:
    from .. import images

_boxes = itertools.count(1)
_live: "weakref.WeakSet" = weakref.WeakSet()


def _close_all() -> None:
    """At the interpreter's exit: what open Sandboxes made is removed (a killed process's
    is swept by the next Sandbox made on the host)."""
    for box in list(_live):
        try:
            box.close()
        except Exception:
            pass


atexit.register(_close_all)
MAX_SLOTS = 64  # runs at once of one Sandbox; more wait for a slot


class Workdir:
    """A directory shared by the runs given it (compile, then test): a sized tmpfs on the
    host, bound at the Sandbox's workdir path. read() never follows a link the sandboxed
    code planted; write() never writes through one."""

    def __init__(self, path: str, uid: int, gid: int) -> None:
        """Made by Sandbox.workdir(); `path` is the host's directory."""
        self.path = path
        self._uid, self._gid = uid, gid

    def read(self, name: str, limit: int | None = None) -> bytes:
        """A regular file of the workdir (at most `limit` bytes); a symlink anywhere on its
        path is an error (InvalidArgument), as is a missing file (FileNotFoundError)."""
        return hostfs.read_file(self.path, name, limit)

    def write(self, name: str, data: bytes | str, mode: int = 0o644) -> None:
        """Put a file in the workdir, owned by the Sandbox's user."""
        hostfs.write_file(self.path, name, data, self._uid, self._gid, mode)

    def listdir(self, name: str = ".") -> "list[str]":
        """The names in a directory of the workdir (a link on the path is refused)."""
        return hostfs.list_dir(self.path, name)

    def __repr__(self) -> str:
        return f"Workdir({self.path!r})"


class _Slot:
    """What one run at a time uses: a bundle, an overlay mount point, a scratch tmpfs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.bundle = os.path.join(path, "bundle")
        self.rootfs = os.path.join(self.bundle, "rootfs")
        self.scratch = os.path.join(path, "scratch")
        for d in (path, self.bundle, self.rootfs, self.scratch):
            os.mkdir(d, 0o711 if d != self.scratch else 0o700)
        self.config = b""
        self.mounted: list = []
        self.prepared = -1      # the disk size it is mounted for; -1: not mounted
        self.container = None   # the last run's, until the recycler removes it


class Sandbox:
    """Runs untrusted commands in `image`: a directory holding a root filesystem, the name
    or id of an image in the store (`storage`, default the store `runner pull` uses), or an
    images.Image. Each run gets a fresh container: its own writable layer (thrown away), no
    network but lo (or, with `network` naming one, an interface on it through runner-cni),
    no capabilities, no new privileges, the engines' default seccomp profile, masked /proc
    and /sys paths, the `limits` held by a cgroup. The user is `user`
    ("uid[:gid]" or a name of the image), by default the image's if it is not root, else
    nobody (65534).

    Use it from threads or asyncio (arun) at once; close() (or `with`) removes what it made."""

    def __init__(self, image: "str | os.PathLike | images.Image", limits: Limits | None = None,
                 *, network: "bool | str" = False, network_config_dir: str | None = None,
                 user: str | None = None, readonly_root: bool = False, workdir: str = "/box",
                 env: dict | None = None, storage: str | None = None,
                 rlimits_only: bool = False) -> None:
        if limits is None:
            limits = Limits()
        if not isinstance(limits, Limits):
            raise InvalidArgument(f"limits: want a sandbox.Limits, not {type(limits).__name__}")
        self._hooks = _network_hooks(network, network_config_dir)
        if not isinstance(workdir, str) or not workdir.startswith("/") or workdir == "/" or \
                ".." in workdir.split("/"):
            raise InvalidArgument(f"workdir: {workdir!r} must be an absolute path below /")
        from ..userns import rootless

        self.rootless = rootless()
        if self.rootless and network:
            raise InvalidArgument("network: an unprivileged Sandbox has lo alone (a bridge "
                                  "and veths need root)")
        if self.rootless and not readonly_root:
            raise InvalidArgument("readonly_root: an unprivileged Sandbox cannot mount a "
                                  "writable layer over the image (the host's mount namespace "
                                  "is not its own): pass readonly_root=True; /tmp and the "
                                  "workdir stay writable")
        self.limits = limits
        self.rlimits_only = bool(rlimits_only)
        self._cgroup = True
        if self.rootless:
            self._cgroup = _cgroup_holds(limits, self.rlimits_only)
        self.readonly_root = bool(readonly_root)
        self.workdir_path = os.path.normpath(workdir)
        self._lowers, image_config = _resolve_image(image, storage)
        ic = image_config.get("config") or {}
        if self.rootless:
            # one id is mapped, the caller's own, as the user namespace's root (the runtime
            # needs 0 mapped): no capabilities, no new privileges, the caller's uid outside
            if user not in (None, "0", "0:0", "root"):
                raise InvalidArgument(f"user: {user!r}: an unprivileged Sandbox runs as the "
                                      "caller's own uid (root of the run's user namespace)")
            user = "0:0"
        self._top = os.lstat(self._lowers[0])
        root = hostfs.base_root()
        os.makedirs(root, mode=0o711, exist_ok=True)
        hostfs.sweep(root)
        self.path = os.path.join(root, f"{os.getpid()}-{next(_boxes)}")
        hostfs.make_private_dir(self.path)
        self._owner = -1
        try:
            self._owner = hostfs.hold(self.path)
            if self.rootless:
                self._rootless_setup()
            with self._image_view() as view:  # the image's /etc/passwd and /etc/group
                u = _resolve_user(view, user, ic.get("User") or "")
        except BaseException:
            if self._owner >= 0:
                os.close(self._owner)
            hostfs.remove_tree(self.path)
            raise
        self.uid, self.gid, self._groups = u["uid"], u["gid"], u.get("additionalGids", [])
        penv = [e for e in ic.get("Env") or [] if isinstance(e, str) and "=" in e]
        if not any(e.startswith("PATH=") for e in penv):
            penv.insert(0, configs.DEFAULT_PATH)
        penv.append(f"HOME={self.workdir_path}")
        self._env = _merge_env(penv, env or {}, "env")
        self._state = os.path.join(self.path, "state")
        os.mkdir(self._state, 0o700)
        self._lock = threading.Condition()
        self._ready: list = []    # slots mounted and empty, for the next run
        self._dirty: list = []    # (slot, container) for the recycler
        self._recycler = None     # a thread while there is something to recycle
        self._busy = 0            # slots the recycler is working on
        self._running = 0         # slots taken by runs
        self._slots = 0
        self._seq = itertools.count(1)
        self._wds = itertools.count(1)
        self._closed = False
        _live.add(self)

    # ---- running --------------------------------------------------------------------

    def run(self, cmd: "list[str] | str", *, files: "dict[str, bytes | str] | None" = None, stdin: bytes | str = b"",
            env: dict | None = None, workdir: Workdir | None = None,
            limits: Limits | None = None) -> Result:
        """Run `cmd` (a list, or a string for /bin/sh -c) in a fresh container and wait.
        `files` ({relative path: bytes}) are put in the workdir first; `workdir` (from
        workdir()) keeps them between runs. Never raises for what the command does: the
        Result says; a command that does not exist is exit code 127 (RE)."""
        args = _args(cmd)
        if isinstance(stdin, str):
            stdin = stdin.encode()
        if not isinstance(stdin, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"stdin: want bytes or str, not {type(stdin).__name__}")
        limits = limits or self.limits
        run_env = _merge_env(self._env, env or {}, "env") if env else self._env
        if workdir is not None and not isinstance(workdir, Workdir):
            raise InvalidArgument("workdir: want a Workdir from Sandbox.workdir()")
        slot = self._take(limits)
        try:
            return self._run(slot, args, files or {}, bytes(stdin), run_env, workdir, limits)
        finally:
            self._give(slot)

    async def arun(self, cmd: "list[str] | str", *,
                   files: "dict[str, bytes | str] | None" = None, stdin: bytes | str = b"",
                   env: dict | None = None, workdir: Workdir | None = None,
                   limits: Limits | None = None) -> Result:
        """run() for asyncio: in the loop's default executor, so many run at once (the
        arguments as for run())."""
        import asyncio
        import functools

        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self.run, cmd, files=files, stdin=stdin, env=env,
                                    workdir=workdir, limits=limits))

    def _run(self, slot: _Slot, args, files, stdin, env, wd, limits) -> Result:
        if True:
            wd_src = wd.path if wd is not None else os.path.join(slot.scratch, "box")
            owner = (os.geteuid(), os.getegid()) if self.rootless else (self.uid, self.gid)
            for name, data in files.items():
                hostfs.write_file(wd_src, name, data, *owner)
            cfg = configs.make(args=args, env=env, cwd=self.workdir_path, uid=self.uid,
                               gid=self.gid, groups=self._groups,
                               rootfs=self._rootfs if self.rootless else slot.rootfs,
                               readonly=self.readonly_root, workdir_src=wd_src,
                               workdir_dst=self.workdir_path, limits=limits, network=False,
                               rootless=self.rootless, id_maps=self._maps(),
                               cgroup=self._cgroup, copy_workdir=self.rootless and wd is None)
            if self._hooks:
                cfg["hooks"] = self._hooks
            self._write_config(slot, cfg)
            return self._start(slot, stdin, limits)

    def _start(self, slot: _Slot, stdin: bytes, limits: Limits) -> Result:
        cid = f"sbx{os.getpid()}-{os.path.basename(self.path).split('-')[1]}-{next(self._seq)}"
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        # the command runs under the shim's init (as `docker run --init`, isolate, bwrap):
        # its own abort() or kill(0, ...) ends it as for any process, orphans are reaped;
        # the init tells the command's wait status through this pipe
        st_r, st_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        ours = [in_w, out_r, err_r]
        theirs = [in_r, out_w, err_w, st_w]
        c = None
        started = time.monotonic()
        try:
            try:
                c = creation.create_from(CreateRequest(
                    slot.bundle, cid, root=self._state, stdio=(in_r, out_w, err_w),
                    start_now=True, foreground=True, init=True, init_status_fd=st_w,
                    cgroup_controllers=configs.CGROUP_CONTROLLERS))
            except ExecNotFound as e:
                return _failed_exec(e, 127, started)
            except StartError as e:
                if getattr(e, "exit_code", None) == 126:
                    return _failed_exec(e, 126, started)
                raise
            finally:
                for fd in theirs:
                    os.close(fd)
                theirs = []
            counters = Counters(c._cgroups())
            ours_now, ours = ours, []
            res = supervise(c.pid, started, ours_now[1], ours_now[2], ours_now[0], stdin,
                            limits, counters, st_r)
            res.decide()
            return res
        finally:
            for fd in ours + theirs + [st_r]:
                os.close(fd)
            # every process of it is dead (its pid namespace's init was reaped): removing
            # the container and the slot's mounts is left to the recycler
            slot.container = c

    # ---- the slot's files -------------------------------------------------------------

    # A slot goes round: taken ready (mounted, empty), used by one run, handed to the
    # recycler thread, which removes the run's container, unmounts the slot (the kernel's
    # umount waits for an RCU grace period: ~1 ms each, off the caller's path) and mounts
    # it afresh for the next run.

    def _take(self, limits: Limits) -> _Slot:
        with self._lock:
            while True:
                if self._closed:
                    raise ContainerError("sandbox: closed")
                if self._ready:
                    slot = self._ready.pop()
                    break
                # one slot more than the runs under way, so that one is recycled while
                # they run: serial runs use two, each run waits for no recycling
                if self._slots < min(self._running + 2, MAX_SLOTS):
                    self._slots += 1
                    slot = _Slot(os.path.join(self.path, f"slot{self._slots}"))
                    break
                self._lock.wait()
            self._running += 1
        if slot.prepared != limits.disk:
            try:
                self._release(slot)
                self._prepare(slot, limits)
            except BaseException:
                self._give(slot)
                raise
        return slot

    def _give(self, slot: _Slot) -> None:
        with self._lock:
            self._running -= 1
            self._dirty.append(slot)
            if self._recycler is None:
                self._recycler = threading.Thread(target=self._recycle, daemon=True,
                                                  name="sandbox-recycler")
                self._recycler.start()
            self._lock.notify_all()

    def _recycle(self) -> None:
        while True:
            with self._lock:
                if not self._dirty and not self._closed:
                    self._lock.notify_all()  # flush() waits for an empty queue
                    self._lock.wait(1.0)      # a next run soon is likely: linger a second
                if not self._dirty:
                    self._recycler = None
                    self._lock.notify_all()
                    return
                slot = self._dirty.pop(0)
                self._busy += 1
            try:
                self._clean(slot)
                if not self._closed:
                    self._prepare(slot, self.limits)
                ok = True
            except Exception as e:  # the slot is dropped; close() removes what is left
                from ..log import warning

                warning(f"sandbox: cannot recycle {slot.path}: {e}")
                ok = False
            with self._lock:
                self._busy -= 1
                if ok and not self._closed:
                    self._ready.append(slot)
                self._lock.notify_all()

    def _clean(self, slot: _Slot) -> None:
        c, slot.container = slot.container, None
        if c is not None:
            c.delete(force=True)
        self._release(slot)

    def flush(self) -> None:
        """Wait until every finished run's container and mounts are removed."""
        with self._lock:
            while self._dirty or self._busy:
                self._lock.wait()

    def _prepare(self, slot: _Slot, limits: Limits) -> None:
        slot.prepared = limits.disk
        if self.rootless:
            # no mount of ours: the files go to a host directory, which the container
            # copies into a sized tmpfs of its own (tmpcopyup) before the command runs
            box = os.path.join(slot.scratch, "box")
            hostfs.remove_tree(box)
            os.mkdir(box, 0o755)
            return
        hostfs.mount_tmpfs(slot.scratch, limits.disk, 0o700)
        slot.mounted.append(slot.scratch)
        upper, work, box = (os.path.join(slot.scratch, d) for d in ("upper", "work", "box"))
        os.mkdir(upper)
        os.mkdir(work, 0o700)
        os.mkdir(box, 0o755)
        os.chown(box, self.uid, self.gid)
        top = self._top
        os.chown(upper, top.st_uid, top.st_gid)
        os.chmod(upper, top.st_mode & 0o7777)
        hostfs.mount_overlay(self._lowers, upper, work, slot.rootfs)
        slot.mounted.append(slot.rootfs)

    def _rootless_setup(self) -> None:
        """The image as one read-only directory: a rootfs directory as it is, a store
        image's layers copied once into this Sandbox's directory (no overlay mount outside
        a user namespace)."""
        if len(self._lowers) == 1:
            self._rootfs = self._lowers[0]
            return
        from ..images import driver

        self._rootfs = os.path.join(self.path, "rootfs")
        os.mkdir(self._rootfs, 0o755)
        for layer in reversed(self._lowers):
            driver.apply_layer(layer, self._rootfs, True)
        driver.copy_root_attrs(self._lowers[0], self._rootfs, True)

    @contextlib.contextmanager
    def _image_view(self):
        """The image as one directory, for reading its files: the rootfs itself, the
        rootless copy, or a read-only overlay of the layers, mounted for the while."""
        if self.rootless:
            yield self._rootfs
        elif len(self._lowers) == 1:
            yield self._lowers[0]
        else:
            view = os.path.join(self.path, "view")
            os.mkdir(view)
            hostfs.mount("overlay", view, "overlay", 1, "lowerdir=" + ":".join(self._lowers))
            try:
                yield view
            finally:
                hostfs.umount(view)
                os.rmdir(view)

    def _maps(self) -> tuple:
        """Rootless: the run's user is this process's own uid and gid, alone (the image's
        files of other owners show as the overflow id)."""
        if not self.rootless:
            return ()
        return ([{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
                [{"containerID": 0, "hostID": os.getegid(), "size": 1}])

    def _release(self, slot: _Slot) -> None:
        slot.prepared = -1
        while slot.mounted:
            hostfs.umount(slot.mounted.pop())

    def _write_config(self, slot: _Slot, cfg: dict) -> None:
        from .. import jsonio

        data = jsonio.dumps(cfg).encode()
        if data != slot.config:
            tmp = os.path.join(slot.bundle, "config.json.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, os.path.join(slot.bundle, "config.json"))
            slot.config = data

    # ---- workdirs -----------------------------------------------------------------

    @contextlib.contextmanager
    def workdir(self) -> "Iterator[Workdir]":
        """A Workdir for several runs (files persist between them), removed at the end."""
        if self._closed:
            raise ContainerError("sandbox: closed")
        path = os.path.join(self.path, f"wd{next(self._wds)}")
        if self.rootless:
            # a directory of this user's (the run's user is this user): files=
            # and read() as for root; its size is held per file only (RLIMIT_FSIZE)
            os.mkdir(path, 0o755)
            try:
                yield Workdir(path, os.geteuid(), os.getegid())
            finally:
                hostfs.remove_tree(path)
            return
        os.mkdir(path, 0o700)
        try:
            hostfs.mount_tmpfs(path, self.limits.disk, 0o755, self.uid, self.gid)
            yield Workdir(path, self.uid, self.gid)
        finally:
            hostfs.umount(path)
            os.rmdir(path)

    # ---- the end ------------------------------------------------------------------

    def close(self) -> None:
        """Remove every directory and mount this Sandbox made (runs under way finish
        first: their slots are taken)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        self.flush()
        with self._lock:
            t = self._recycler
        if t is not None:
            t.join()
        for slot in self._ready:
            self._clean(slot)
        self._ready.clear()
        hostfs.remove_tree(self.path)
        os.close(self._owner)

    def __enter__(self) -> "Sandbox":
        """`with Sandbox(...) as box:` closes it at the end."""
        return self

    def __exit__(self, *exc: object) -> None:
        """close()."""
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass


def _network_hooks(network, config_dir: str | None) -> dict:
    """network=False: lo alone. A network's name (`runner network create`): each run is
    attached to it by runner-cni hooks (createRuntime add, poststop del), as `runner run`
    with a bundle from `runner network hooks` is."""
    if network is False or network is None:
        return {}
    if not isinstance(network, str) or not network:
        raise InvalidArgument(f"network: {network!r}: False (lo alone) or the name of a "
                              "network (`runner network create NAME`)")
    import sys

    from ..network import hook, netconf

    netconf.load(network, config_dir)  # it exists: an error names it now, not per run
    exe = ""
    for d in [os.path.dirname(sys.executable)] + os.environ.get("PATH", "").split(":"):
        p = os.path.join(d, "runner-cni") if d else ""
        if p and os.access(p, os.X_OK):
            exe = p
            break
    if not exe:
        raise InvalidArgument("network: runner-cni is not installed next to this Python or "
                              "on PATH")
    return hook.entries(network, exe, config_dir)


class LimitsUnavailable(ContainerError):
    """An unprivileged Sandbox without a delegated cgroup: the limits named cannot hold."""


def _cgroup_holds(limits: Limits, rlimits_only: bool) -> bool:
    """Rootless: True when a delegated cgroup holds the limits; without one, an error
    naming what cannot hold, or (rlimits_only) False: per-process rlimits instead."""
    from .. import cgroups
    from ..errors import ConfigError

    wanted = {}
    if limits.memory is not None:
        wanted["memory"] = {"limit": limits.memory}
    if limits.pids is not None:
        wanted["pids"] = {"limit": limits.pids}
    why = ""
    try:
        m = cgroups.Manager.plan(f"sbx-probe-{os.getpid()}", "", wanted)
    except ConfigError as e:
        m, why = None, str(e)
    if m is not None and not why:
        paths = m.paths
        if limits.cpu_time is None or "cpuacct" in paths or m.unified:
            return True
        why = "no cpuacct cgroup (v1) nor cgroup v2 subtree is delegated"
    elif not why:
        why = "no cgroup is delegated to this user"
    if rlimits_only:
        return False
    names = [n for n, v in (("cpu_time", limits.cpu_time), ("memory", limits.memory),
                            ("pids", limits.pids)) if v is not None]
    raise LimitsUnavailable(
        f"sandbox: these limits cannot hold without a cgroup delegated to uid "
        f"{os.geteuid()}: {', '.join('limits.' + n for n in names)} ({why}). Delegate "
        "one (README, Rootless), lift them (None), or pass rlimits_only=True to accept "
        "per-process rlimits instead (RLIMIT_CPU per process, RLIMIT_AS, RLIMIT_NPROC per "
        "user); wall_time, output and the /tmp size hold either way")


def _failed_exec(e: Exception, code: int, started: float) -> Result:
    r = Result(exit_code=code, stderr=f"{e}\n".encode(), duration=time.monotonic() - started)
    r.decide()
    return r


def _args(cmd) -> list:
    if isinstance(cmd, str):
        if not cmd.strip():
            raise InvalidArgument("cmd: empty")
        return ["/bin/sh", "-c", cmd]
    if not isinstance(cmd, (list, tuple)) or not cmd or \
            not all(isinstance(a, str) for a in cmd):
        raise InvalidArgument(f"cmd: want a non-empty list of strings or a string, not {cmd!r}")
    return list(cmd)


def _merge_env(base: list, extra: dict, field: str) -> list:
    out = list(base)
    if not isinstance(extra, dict):
        raise InvalidArgument(f"{field}: want a dict of str → str")
    for k, v in extra.items():
        if not isinstance(k, str) or not k or "=" in k or not isinstance(v, str):
            raise InvalidArgument(f"{field}[{k!r}]: want a name without '=' and a str value")
        item = f"{k}={v}"
        for i, e in enumerate(out):
            if e.partition("=")[0] == k:
                out[i] = item
                break
        else:
            out.append(item)
    return out


def _resolve_image(image, storage):
    """→ (lower dirs, top first; the image config)."""
    from .. import images

    if isinstance(image, images.Image):
        store = images.Store(storage)
        img = image
    elif isinstance(image, (str, os.PathLike)) and os.path.isdir(image):
        path = os.path.abspath(os.fspath(image))
        if any(c in path for c in ",:"):
            raise InvalidArgument(f"image: the path {path!r} has a ',' or ':'")
        return [path], {}
    elif isinstance(image, str):
        store = images.Store(storage)
        with store.shared():
            img = store.get(image)
    else:
        raise InvalidArgument(f"image: want a directory, an image name or an images.Image, "
                              f"not {type(image).__name__}")
    with store.shared():
        lowers = [store.layer_dir(d) for d in reversed(img.layers)]
        for d in lowers:
            if not os.path.isdir(d):
                raise InvalidArgument(f"image {img.id[:12]}: a layer is missing from the store "
                                      "(pull again)")
        return lowers, store.config(img)


def _resolve_user(view: str, user, image_user: str) -> dict:
    from ..images.bundle import resolve_user
    from ..images.errors import ImageError

    if user is not None:
        if not isinstance(user, str) or not user:
            raise InvalidArgument(f"user: {user!r} is not 'uid[:gid]' or a name")
        try:
            return resolve_user(view, user)
        except ImageError as e:
            raise InvalidArgument(f"user: {e}") from None
    if image_user:
        u = resolve_user(view, image_user)
        if u["uid"] != 0:
            return u
    try:
        return resolve_user(view, "nobody")
    except Exception:
        return {"uid": 65534, "gid": 65534}
