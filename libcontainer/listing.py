"""A container's status and OCI state from its recorded state (what `state` and `list`
show), and `list`'s walk of the state root, which builds no Container per container.

The rules live here once: Container.status and Container.state are these functions on the
container's own state, so a listed container reads exactly as `state` shows it."""
from __future__ import annotations

import os

from . import fileio
from .errors import ContainerError, DamagedState, NotFound
from .owners import owner_name
from .spec import OCI_VERSION
from .state import StateDir, alive, read_head

FIFO = "exec.fifo"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def status_of(state: dict, fifo: str, dir_fd: int | None = None,
              dirs: dict | None = None) -> str:
    """creating, created, running, paused or stopped (runtime.md "State") of the container
    whose recorded state is `state` and whose exec fifo is (or was) at `fifo`, a path
    relative to `dir_fd` when one is given. `dirs`: see _read_in."""
    pid = state["pid"]
    live = pid > 0 and alive(pid, state.get("start_time"))
    recorded = state.get("status")
    if recorded == "creating":
        # a create still under way, or one whose runner died (delete --force cleans up)
        if live or alive(state.get("creator", 0), state.get("creator_start")):
            return "creating"
        return "stopped"
    if not live:
        return "stopped"
    # `start` removes the fifo before it records "running", and a create that starts at
    # once (run) makes none: a container recorded running has no fifo to look for (one
    # stat fewer per container listed). Any other record (created, or a start that died
    # between the two) asks the fifo, as runc asks it.
    if recorded != "running":
        try:
            os.stat(fifo, dir_fd=dir_fd)
            return "created"
        except OSError:  # (as os.path.exists: whatever cannot be stat'ed is not there)
            pass
    return "paused" if is_paused(state, dirs) else "running"


def is_paused(state: dict, dirs: dict | None = None) -> bool:
    """Manager.paused(), from the paths in the state, without loading the cgroup
    package (1-2 ms of a `state` or `list`, the engines' most frequent calls). A state
    read by its head alone (state.read_head) has the paths' copy, "pause", instead.
    `dirs`: see _read_in."""
    info = state.get("cgroups") or state.get("pause")
    if not info:
        return False
    freezer = (info.get("paths") or {}).get("freezer")
    try:
        if freezer:  # v1: FREEZING counts as paused, as Manager.paused says
            return _read_in(freezer, "freezer.state", dirs).strip() != b"THAWED"
        unified = info.get("unified")
        if unified:
            for line in _read_in(unified, "cgroup.events", dirs).splitlines():
                if line.startswith(b"frozen "):
                    return line.split()[1] == b"1"
    except OSError:
        pass
    return False


def _read_in(cgroup: str, name: str, dirs: dict | None) -> bytes:
    """The file `name` of the cgroup directory `cgroup`. With `dirs` (a list's: parent
    directory → an fd of it, or a mark), from the second cgroup of a parent on, opened
    relative to the parent: /sys/fs/cgroup/freezer/runner-ID/freezer.state walks two
    components, not six with two mount crossings (the freezer's read was the dearest of a
    list's three). The first of each parent is read by its path, so a list of cgroups
    that share no parent opens nothing more."""
    parent, _, leaf = cgroup.rpartition("/")
    if dirs is not None and parent and leaf:
        fd = dirs.get(parent)
        if fd is None:
            dirs[parent] = _SEEN
        elif fd == _SEEN:
            try:
                dirs[parent] = fd = os.open(parent, _DIR | os.O_PATH)
            except OSError:
                dirs[parent] = _FAILED
        if fd is not None and fd >= 0:
            return fileio.read_once(f"{leaf}/{name}", fd)
    return fileio.read_once(f"{cgroup}/{name}")


_SEEN, _FAILED = -2, -1  # _read_in's marks: a parent seen once; one that would not open


def oci_state(state: dict, container_id: str, status: str,
              owner_names: dict | None = None) -> dict:
    """The OCI state (runtime.md: ociVersion, id, status, pid, bundle, annotations) with
    runc's extra fields in runc's order and types: rootfs, created (RFC 3339 with
    nanoseconds, as Go prints a time), owner (a user name); annotations only when
    there are some (runc's omitempty). `owner_names`: see owners.owner_name."""
    out = {
        "ociVersion": OCI_VERSION,
        "id": container_id,
        "pid": state["pid"] if status != "stopped" else 0,
        "status": status,
        "bundle": state["bundle"],
        "rootfs": state.get("rootfs", ""),
        "created": state.get("created", ""),
    }
    annotations = state.get("annotations")
    if annotations:
        out["annotations"] = annotations
    out["owner"] = owner_name(state.get("owner", ""), owner_names)
    return out


def damaged(container_id: str) -> dict:
    """What stands for a container whose state file cannot be read: listed stopped, so
    that it can be found and deleted (delete --force)."""
    return {"ociVersion": OCI_VERSION, "id": container_id, "status": "stopped", "pid": 0,
            "bundle": ""}


def iter_states(root: str, owner_names: dict | None = None):
    """The OCI state of every container under `root`, sorted by ID, one at a time: what
    list_containers(root) would give, each `.state(owner_names)`, without a Container or
    a StateDir made for each (a third of a list's time was theirs), with the state files
    and exec fifos opened relative to the root (shorter path walks), each state file
    parsed only as far as what a list shows (state.read_head)."""
    try:
        names = sorted(os.listdir(root))
        root_fd = os.open(root, _DIR)
    except FileNotFoundError:
        return
    dirs: dict = {}
    try:
        for name in names:
            if name[0] == ".":
                continue  # a create or delete under way (see state.CREATING)
            try:
                state = read_head(fileio.read_once(f"{name}/state.json", root_fd))
            except (OSError, ValueError):
                # StateDir.read says what it is, as `load` would have
                try:
                    state = StateDir(root, name).read()
                except NotFound:
                    continue  # deleted meanwhile, or not a container's directory
                except DamagedState as e:
                    _warn(str(e))
                    state = damaged(name)
                except ContainerError as e:
                    _warn(str(e))
                    continue
            yield oci_state(state, name, status_of(state, f"{name}/{FIFO}", root_fd, dirs),
                            owner_names)
    finally:
        os.close(root_fd)
        for fd in dirs.values():
            if fd >= 0:
                os.close(fd)


def _warn(msg: str) -> None:
    from .log import warning

    warning(msg)
