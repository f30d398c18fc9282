"""The OCI runtime config (config.json) as typed, immutable objects.

This is the only module that reads raw JSON. Every error names the field's path, e.g.
``linux.namespaces[2].type: unknown namespace "foo"``. Parts that later stages pass through
untouched (hooks, resources, seccomp, annotations) are kept as plain, already type-checked data.
"""
from __future__ import annotations

import errno
import os

from . import fileio, jsonio
from .errors import ConfigError

OCI_VERSION = "1.3.0"

NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


class Frozen:
    """Attributes are set once, in __init__, through _set."""

    __slots__ = ()

    def _set(self, **kw) -> None:
        for k, v in kw.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)


# ---- field readers: each checks the JSON type and names the field on error ------------

_TYPES = {str: "a string", bool: "a boolean", int: "an integer", list: "an array",
          dict: "an object", float: "a number"}


def _get(obj: dict, key: str, path: str, typ, default=None, required: bool = False):
    field = f"{path}.{key}" if path else key
    if key not in obj or obj[key] is None:
        if required:
            raise ConfigError(field, "is required")
        return default
    v = obj[key]
    if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise ConfigError(field, f"must be {_TYPES[int]}, not {_jtype(v)}")
    if typ is float and isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    if typ is not int and not isinstance(v, typ):
        raise ConfigError(field, f"must be {_TYPES[typ]}, not {_jtype(v)}")
    return v


def _jtype(v) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(v), "null")


def _strings(obj: dict, key: str, path: str) -> tuple:
    items = _get(obj, key, path, list, [])
    field = f"{path}.{key}" if path else key
    for i, s in enumerate(items):
        if not isinstance(s, str):
            raise ConfigError(f"{field}[{i}]", f"must be a string, not {_jtype(s)}")
    return tuple(items)


def _objects(obj: dict, key: str, path: str) -> list:
    items = _get(obj, key, path, list, [])
    field = f"{path}.{key}" if path else key
    for i, o in enumerate(items):
        if not isinstance(o, dict):
            raise ConfigError(f"{field}[{i}]", f"must be an object, not {_jtype(o)}")
    return items


def _uint(obj: dict, key: str, path: str, default=None, required=False, bits=32):
    v = _get(obj, key, path, int, default, required)
    if v is not None and not 0 <= v < (1 << bits):
        raise ConfigError(f"{path}.{key}" if path else key, f"{v} is out of range")
    return v


def id_list(text: str, field: str, what: str, limit: int) -> tuple:
    """A kernel list string ("0-3,7", as in cpuset.cpus) → the sorted ids. `limit` is the
    largest id Linux can have, so that "0-4294967295" is an error, not a huge mask."""
    ids = set()
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        lo, hi = lo.strip(), hi.strip() if dash else lo.strip()
        if not (lo.isdigit() and hi.isdigit() and lo.isascii() and hi.isascii()):
            raise ConfigError(field, f"{text!r} is not a list of {what}s like \"0-3,7\"")
        first, last = int(lo), int(hi)
        if first > last:
            raise ConfigError(field, f"{part!r}: a range must go upwards")
        if last > limit:
            raise ConfigError(field, f"{what} {last} is above {limit}, the largest Linux has")
        ids.update(range(first, last + 1))
    return tuple(sorted(ids))


MAX_CPU = 8191   # CONFIG_NR_CPUS at most
MAX_NODE = 1023  # CONFIG_NODES_SHIFT at most 10


# ---- the config's parts ----------------------------------------------------------------

class IDMapping(Frozen):
    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, container_id: int, host_id: int, size: int):
        self._set(container_id=container_id, host_id=host_id, size=size)

    @classmethod
    def parse(cls, o: dict, path: str) -> "IDMapping":
        return cls(_uint(o, "containerID", path, required=True),
                   _uint(o, "hostID", path, required=True),
                   _uint(o, "size", path, required=True))


def _mappings(obj: dict, key: str, path: str) -> tuple:
    field = f"{path}.{key}" if path else key
    return tuple(IDMapping.parse(o, f"{field}[{i}]") for i, o in enumerate(_objects(obj, key, path)))


class Mount(Frozen):
    __slots__ = ("destination", "type", "source", "options", "uid_mappings", "gid_mappings")

    def __init__(self, destination: str, type: str, source: str, options: tuple,
                 uid_mappings: tuple = (), gid_mappings: tuple = ()):
        self._set(destination=destination, type=type, source=source, options=options,
                  uid_mappings=uid_mappings, gid_mappings=gid_mappings)

    @classmethod
    def parse(cls, o: dict, path: str) -> "Mount":
        dest = _get(o, "destination", path, str, required=True)
        if not dest.startswith("/"):
            raise ConfigError(f"{path}.destination", f"{dest!r} must be an absolute path")
        # an idmapped mount's own mappings (config.md: one MUST come with the other)
        uid_maps = _mappings(o, "uidMappings", path)
        gid_maps = _mappings(o, "gidMappings", path)
        if bool(uid_maps) != bool(gid_maps):
            missing = "gidMappings" if uid_maps else "uidMappings"
            raise ConfigError(f"{path}.{missing}", "uidMappings and gidMappings go together")
        for key, maps in (("uidMappings", uid_maps), ("gidMappings", gid_maps)):
            for i, m in enumerate(maps):
                if m.size == 0:
                    raise ConfigError(f"{path}.{key}[{i}].size", "must be at least 1")
        return cls(os.path.normpath(dest), _get(o, "type", path, str, ""),
                   _get(o, "source", path, str, ""), _strings(o, "options", path),
                   uid_maps, gid_maps)


class Namespace(Frozen):
    __slots__ = ("type", "path")

    def __init__(self, type: str, path: str = ""):
        self._set(type=type, path=path)


class Device(Frozen):
    __slots__ = ("path", "type", "major", "minor", "file_mode", "uid", "gid")

    def __init__(self, path, type, major, minor, file_mode=0o666, uid=0, gid=0):
        self._set(path=path, type=type, major=major, minor=minor, file_mode=file_mode,
                  uid=uid, gid=gid)

    @classmethod
    def parse(cls, o: dict, path: str) -> "Device":
        p = _get(o, "path", path, str, required=True)
        # anywhere in the container, as runc and crun make it (config-linux.md: "full path
        # to device inside container"); the shim creates missing parent directories
        if not p.startswith("/") or os.path.normpath(p) == "/":
            raise ConfigError(f"{path}.path", f"{p!r} must be an absolute path to a file")
        t = _get(o, "type", path, str, required=True)
        if t not in ("c", "b", "u", "p"):
            raise ConfigError(f"{path}.type", f"unknown device type {t!r} (want c, b, u or p)")
        need = t != "p"
        return cls(os.path.normpath(p), t, _uint(o, "major", path, 0, need, 12 if need else 32),
                   _uint(o, "minor", path, 0, need, 20 if need else 32),
                   _uint(o, "fileMode", path, 0o666), _uint(o, "uid", path, 0),
                   _uint(o, "gid", path, 0))


class Rlimit(Frozen):
    __slots__ = ("type", "soft", "hard")

    def __init__(self, type: str, soft: int, hard: int):
        self._set(type=type, soft=soft, hard=hard)


class User(Frozen):
    __slots__ = ("uid", "gid", "umask", "additional_gids")

    def __init__(self, uid=0, gid=0, umask=None, additional_gids=()):
        self._set(uid=uid, gid=gid, umask=umask, additional_gids=tuple(additional_gids))


class Capabilities(Frozen):
    """Capability names as given (``CAP_SYS_ADMIN``); checked in security.capabilities."""

    __slots__ = ("bounding", "effective", "permitted", "inheritable", "ambient")

    def __init__(self, bounding=(), effective=(), permitted=(), inheritable=(), ambient=()):
        self._set(bounding=tuple(bounding), effective=tuple(effective),
                  permitted=tuple(permitted), inheritable=tuple(inheritable),
                  ambient=tuple(ambient))


class Process(Frozen):
    __slots__ = ("terminal", "console_size", "user", "args", "env", "cwd", "capabilities",
                 "rlimits", "no_new_privileges", "oom_score_adj", "apparmor_profile",
                 "selinux_label", "io_priority", "scheduler", "exec_cpu_affinity")

    def __init__(self, args, env=(), cwd="/", user=None, terminal=False, console_size=None,
                 capabilities=None, rlimits=(), no_new_privileges=False, oom_score_adj=None,
                 apparmor_profile="", selinux_label="", io_priority=None, scheduler=None,
                 exec_cpu_affinity=None):
        self._set(terminal=terminal, console_size=console_size, user=user or User(),
                  args=tuple(args), env=tuple(env), cwd=cwd, capabilities=capabilities,
                  rlimits=tuple(rlimits), no_new_privileges=no_new_privileges,
                  oom_score_adj=oom_score_adj, apparmor_profile=apparmor_profile,
                  selinux_label=selinux_label, io_priority=io_priority, scheduler=scheduler,
                  exec_cpu_affinity=exec_cpu_affinity)

    @classmethod
    def parse(cls, o: dict, path: str = "process") -> "Process":
        args = _strings(o, "args", path)
        if not args:
            raise ConfigError(f"{path}.args", "must name the program to run")
        cwd = _get(o, "cwd", path, str, required=True)
        if not cwd.startswith("/"):
            raise ConfigError(f"{path}.cwd", f"{cwd!r} must be an absolute path")
        env = _strings(o, "env", path)
        for i, e in enumerate(env):
            if "=" not in e:
                raise ConfigError(f"{path}.env[{i}]", f"{e!r} is not of the form KEY=value")
        u = _get(o, "user", path, dict, {})
        upath = f"{path}.user"
        user = User(_uint(u, "uid", upath, 0), _uint(u, "gid", upath, 0),
                    _uint(u, "umask", upath, None),
                    tuple(_uint({f"{upath}.additionalGids[{i}]": g}, f"{upath}.additionalGids[{i}]", "")
                          for i, g in enumerate(_get(u, "additionalGids", upath, list, []))))
        if _get(u, "username", upath, str):
            raise ConfigError(f"{upath}.username", "is for Windows; use uid and gid")
        caps = None
        c = _get(o, "capabilities", path, dict)
        if c is not None:
            cpath = f"{path}.capabilities"
            caps = Capabilities(*(_strings(c, k, cpath) for k in
                                  ("bounding", "effective", "permitted", "inheritable", "ambient")))
        rlimits = []
        seen = set()
        for i, r in enumerate(_objects(o, "rlimits", path)):
            rp = f"{path}.rlimits[{i}]"
            t = _get(r, "type", rp, str, required=True)
            if t in seen:
                raise ConfigError(f"{rp}.type", f"{t} is given twice")
            seen.add(t)
            soft = _uint(r, "soft", rp, required=True, bits=64)
            hard = _uint(r, "hard", rp, required=True, bits=64)
            if soft > hard:
                raise ConfigError(rp, f"soft limit {soft} is above the hard limit {hard}")
            rlimits.append(Rlimit(t, soft, hard))
        size = _get(o, "consoleSize", path, dict)
        if size is not None:
            size = (_uint(size, "height", f"{path}.consoleSize", required=True),
                    _uint(size, "width", f"{path}.consoleSize", required=True))
        oom = _get(o, "oomScoreAdj", path, int)
        if oom is not None and not -1000 <= oom <= 1000:
            raise ConfigError(f"{path}.oomScoreAdj", f"{oom} is outside -1000..1000")
        return cls(args=args, env=env, cwd=os.path.normpath(cwd), user=user,
                   terminal=_get(o, "terminal", path, bool, False), console_size=size,
                   capabilities=caps, rlimits=rlimits,
                   no_new_privileges=_get(o, "noNewPrivileges", path, bool, False),
                   oom_score_adj=oom,
                   apparmor_profile=_get(o, "apparmorProfile", path, str, ""),
                   selinux_label=_get(o, "selinuxLabel", path, str, ""),
                   io_priority=_get(o, "ioPriority", path, dict),
                   scheduler=_get(o, "scheduler", path, dict),
                   exec_cpu_affinity=_cpu_affinity(o, path))


class CPUAffinity(Frozen):
    """process.execCPUAffinity: CPU numbers, empty for a list that was omitted or empty."""

    __slots__ = ("initial", "final")

    def __init__(self, initial=(), final=()):
        self._set(initial=tuple(initial), final=tuple(final))


def _cpu_affinity(o: dict, path: str) -> CPUAffinity | None:
    a = _get(o, "execCPUAffinity", path, dict)
    if a is None:
        return None
    apath = f"{path}.execCPUAffinity"
    lists = []
    for key in ("initial", "final"):
        text = _get(a, key, apath, str, "")
        # omitted or empty: the runtime leaves the affinity alone (config.md)
        lists.append(id_list(text, f"{apath}.{key}", "CPU", MAX_CPU) if text.strip() else ())
    if not any(lists):
        return None
    return CPUAffinity(*lists)


class Linux(Frozen):
    __slots__ = ("namespaces", "uid_mappings", "gid_mappings", "time_offsets", "devices",
                 "cgroups_path", "resources", "rootfs_propagation", "seccomp", "sysctl",
                 "masked_paths", "readonly_paths", "mount_label", "personality",
                 "memory_policy", "intel_rdt")

    def __init__(self, namespaces=(), uid_mappings=(), gid_mappings=(), time_offsets=None,
                 devices=(), cgroups_path="", resources=None, rootfs_propagation="",
                 seccomp=None, sysctl=None, masked_paths=(), readonly_paths=(),
                 mount_label="", personality=None, memory_policy=None, intel_rdt=None):
        self._set(namespaces=tuple(namespaces), uid_mappings=tuple(uid_mappings),
                  gid_mappings=tuple(gid_mappings), time_offsets=time_offsets or {},
                  devices=tuple(devices), cgroups_path=cgroups_path, resources=resources or {},
                  rootfs_propagation=rootfs_propagation, seccomp=seccomp, sysctl=sysctl or {},
                  masked_paths=tuple(masked_paths), readonly_paths=tuple(readonly_paths),
                  mount_label=mount_label, personality=personality,
                  memory_policy=memory_policy, intel_rdt=intel_rdt)

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None

    @classmethod
    def parse(cls, o: dict, path: str = "linux") -> "Linux":
        namespaces = []
        for i, n in enumerate(_objects(o, "namespaces", path)):
            np = f"{path}.namespaces[{i}]"
            t = _get(n, "type", np, str, required=True)
            if t not in NAMESPACES:
                raise ConfigError(f"{np}.type", f"unknown namespace {t!r} (want one of {', '.join(NAMESPACES)})")
            if any(x.type == t for x in namespaces):
                raise ConfigError(f"{np}.type", f"namespace {t!r} is given twice")
            p = _get(n, "path", np, str, "")
            if p:
                if not p.startswith("/"):
                    raise ConfigError(f"{np}.path", f"{p!r} must be an absolute path")
                try:
                    os.stat(p)
                except OSError as e:
                    # EACCES is not "missing": /proc/1/ns/* of a process we may not trace
                    why = ("does not exist" if e.errno == errno.ENOENT
                           else f"cannot be opened: {e.strerror}")
                    raise ConfigError(f"{np}.path", f"{p} {why}") from None
            namespaces.append(Namespace(t, p))
        uid_maps = _mappings(o, "uidMappings", path)
        gid_maps = _mappings(o, "gidMappings", path)
        has_user = any(n.type == "user" for n in namespaces)
        if (uid_maps or gid_maps) and not has_user:
            raise ConfigError(f"{path}.uidMappings" if uid_maps else f"{path}.gidMappings",
                              "id mappings need a user namespace in linux.namespaces")
        user_ns = next((n for n in namespaces if n.type == "user"), None)
        if user_ns and not user_ns.path and not (uid_maps and gid_maps):
            raise ConfigError(f"{path}.uidMappings",
                              "a new user namespace needs both uidMappings and gidMappings")
        offsets = {}
        for clock, v in _get(o, "timeOffsets", path, dict, {}).items():
            tp = f"{path}.timeOffsets.{clock}"
            if clock not in ("monotonic", "boottime"):
                raise ConfigError(tp, "unknown clock (want monotonic or boottime)")
            if not isinstance(v, dict):
                raise ConfigError(tp, "must be an object")
            offsets[clock] = (_get(v, "secs", tp, int, 0), _uint(v, "nanosecs", tp, 0))
        if offsets and not any(n.type == "time" and not n.path for n in namespaces):
            raise ConfigError(f"{path}.timeOffsets", "needs a new time namespace in linux.namespaces")
        devices = tuple(Device.parse(d, f"{path}.devices[{i}]")
                        for i, d in enumerate(_objects(o, "devices", path)))
        cg = _get(o, "cgroupsPath", path, str, "")
        prop = _get(o, "rootfsPropagation", path, str, "")
        if prop and prop not in ROOTFS_PROPAGATION:
            raise ConfigError(f"{path}.rootfsPropagation",
                              f"unknown propagation {prop!r} (want one of {', '.join(ROOTFS_PROPAGATION)})")
        sysctl = _get(o, "sysctl", path, dict, {})
        for k, v in sysctl.items():
            if not isinstance(v, str):
                raise ConfigError(f"{path}.sysctl.{k}", "must be a string")
        seccomp = _get(o, "seccomp", path, dict)
        return cls(namespaces=namespaces, uid_mappings=uid_maps, gid_mappings=gid_maps,
                   time_offsets=offsets, devices=devices, cgroups_path=cg,
                   resources=_get(o, "resources", path, dict, {}), rootfs_propagation=prop,
                   seccomp=seccomp, sysctl=sysctl,
                   masked_paths=_abs_paths(o, "maskedPaths", path),
                   readonly_paths=_abs_paths(o, "readonlyPaths", path),
                   mount_label=_get(o, "mountLabel", path, str, ""),
                   personality=_get(o, "personality", path, dict),
                   memory_policy=_get(o, "memoryPolicy", path, dict),
                   intel_rdt=_get(o, "intelRdt", path, dict))


ROOTFS_PROPAGATION = ("shared", "slave", "private", "unbindable",
                      "rshared", "rslave", "rprivate", "runbindable")


def _abs_paths(o: dict, key: str, path: str) -> tuple:
    out = _strings(o, key, path)
    for i, p in enumerate(out):
        if not p.startswith("/"):
            raise ConfigError(f"{path}.{key}[{i}]", f"{p!r} must be an absolute path")
    return out


class Spec(Frozen):
    """A whole config.json. `bundle` is the absolute bundle directory; `root_path` is
    the absolute rootfs path."""

    __slots__ = ("oci_version", "bundle", "root_path", "root_readonly", "process", "hostname",
                 "domainname", "mounts", "hooks", "annotations", "linux", "raw")

    def __init__(self, **kw):
        self._set(**kw)

    @classmethod
    def parse(cls, raw: dict, bundle: str) -> "Spec":
        if not isinstance(raw, dict):
            raise ConfigError("", "config.json must hold a JSON object")
        ver = _get(raw, "ociVersion", "", str, required=True)
        if not ver.startswith("1."):
            raise ConfigError("ociVersion", f"unsupported version {ver!r} (want 1.x)")
        root = _get(raw, "root", "", dict, required=True)
        rpath = _get(root, "path", "root", str, required=True)
        root_path = os.path.normpath(os.path.join(bundle, rpath))
        if not os.path.isdir(root_path):
            raise ConfigError("root.path", f"{root_path} is not a directory")
        proc = _get(raw, "process", "", dict)
        hooks = _get(raw, "hooks", "", dict, {})
        for stage, items in hooks.items():
            if not isinstance(items, list):
                raise ConfigError(f"hooks.{stage}", "must be an array")
            for i, h in enumerate(items):
                if not isinstance(h, dict) or not isinstance(h.get("path"), str):
                    raise ConfigError(f"hooks.{stage}[{i}].path", "is required")
        annotations = _get(raw, "annotations", "", dict, {})
        return cls(oci_version=ver, bundle=bundle, root_path=root_path,
                   root_readonly=_get(root, "readonly", "root", bool, False),
                   process=Process.parse(proc) if proc is not None else None,
                   hostname=_get(raw, "hostname", "", str, ""),
                   domainname=_get(raw, "domainname", "", str, ""),
                   mounts=tuple(Mount.parse(m, f"mounts[{i}]")
                                for i, m in enumerate(_objects(raw, "mounts", ""))),
                   hooks=hooks, annotations=annotations,
                   linux=Linux.parse(_get(raw, "linux", "", dict, {})), raw=raw)


def load(bundle: str) -> Spec:
    """Read and validate ``<bundle>/config.json``."""
    return load_with_bytes(bundle)[0]


# Parsed configs of this process by (bundle, config.json's bytes): a program that starts the
# same bundle again (libcontainer.run in a loop) skips the parse. A Spec is immutable, and so
# is its raw data by convention: it is shared between runs, never changed. The parse looks
# at the filesystem twice (the rootfs is a directory, a namespace path exists): both are
# checked again on every hit, and a failed check parses anew, which names the field.
# (tests/unit/test_spec.py::test_cache_rechecks_every_filesystem_look keeps this list honest.)
_parsed: dict = {}
_PARSED_MAX = 16


def load_with_bytes(bundle: str) -> tuple:
    """(Spec, config.json's bytes) of `bundle`: the bytes are what the state keeps."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        data = fileio.read(path)
    except FileNotFoundError:
        raise ConfigError("", f"{path} does not exist (is {bundle} a bundle?)") from None
    except OSError as e:
        raise ConfigError("", f"cannot read {path}: {e.strerror}") from None
    key = (bundle, data)
    spec = _parsed.get(key)
    if spec is not None and _filesystem_unchanged(spec):
        return spec, data
    try:
        raw = jsonio.loads(data)
    except ValueError as e:
        raise ConfigError("", f"{path}: malformed JSON: {e}") from None
    spec = Spec.parse(raw, bundle)
    if len(_parsed) >= _PARSED_MAX:
        _parsed.pop(next(iter(_parsed)))
    _parsed[key] = spec
    return spec, data


def _filesystem_unchanged(spec: Spec) -> bool:
    if not os.path.isdir(spec.root_path):
        return False
    for n in spec.linux.namespaces:
        if n.path:
            try:
                os.stat(n.path)
            except OSError:
                return False
    return True
