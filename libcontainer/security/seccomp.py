"""linux.seccomp → a BPF program, compiled in the parent with libseccomp (through the cffi
module) with runc's ENOSYS stub in front (enosys.py); the child only loads the bytes
(RC_OP_SECCOMP) as its last step before execve.

Imported only when a config has a seccomp section: `parse` checks the section without
touching libseccomp, `compile` builds the program, `send_listener` hands a SCMP_ACT_NOTIFY
listener fd to the agent at listenerPath.

Behaviour follows runc: a syscall name libseccomp does not know is skipped (profiles list
syscalls of every architecture and kernel version); an unknown action, operator, arch or
flag is an error naming the field; conditions on distinct arguments are ANDed in one rule,
several conditions on the same argument become one rule each (ORed).
"""
from __future__ import annotations

import os

from ..errors import ConfigError, StartError
from . import enosys

FIELD = "linux.seccomp"

# libseccomp's SCMP_ACT_* values (seccomp.h); ERRNO and TRACE carry a 16-bit number
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7ff00000,
    "SCMP_ACT_LOG": 0x7ffc0000, "SCMP_ACT_ALLOW": 0x7fff0000, "SCMP_ACT_NOTIFY": 0x7fc00000,
}
WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
EPERM = 1

OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
             "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

# The spec's architectures that the linked libseccomp (2.5) knows; the spec also lists
# LOONGARCH64, M68K, SH and SHEB, which need libseccomp 2.6.
ARCHS = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
         "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
         "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
         "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
         "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64")
NEWER_ARCHS = ("SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB")

# seccomp(2) SECCOMP_FILTER_FLAG_*: passed to the kernel by the child when it loads
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}
FLAG_NEW_LISTENER, FLAG_TSYNC_ESRCH = 8, 16

# The child sends the listener fd with sendmsg right after loading: a NOTIFY rule on it
# would wait for an agent that cannot have the fd yet.
NOTIFY_FORBIDDEN = ("sendmsg",)

MAX_ARG_INDEX = 5
_U64 = 1 << 64


class Arg:
    __slots__ = ("index", "value", "value_two", "op")

    def __init__(self, index: int, value: int, value_two: int, op: str):
        self.index, self.value, self.value_two, self.op = index, value, value_two, op


class Rule:
    __slots__ = ("names", "action", "errno_ret", "args")

    def __init__(self, names: tuple, action: str, errno_ret, args: tuple):
        self.names, self.action, self.errno_ret, self.args = names, action, errno_ret, args


class Profile:
    """A checked linux.seccomp section."""

    __slots__ = ("default_action", "default_errno", "archs", "flags", "listener_path",
                 "listener_metadata", "rules")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    @property
    def notify(self) -> bool:
        return any(r.action == "SCMP_ACT_NOTIFY" for r in self.rules)

    def kernel_flags(self) -> int:
        """The flags for seccomp(2), with NEW_LISTENER when a rule notifies."""
        bits = 0
        for name in self.flags:
            bits |= FLAGS[name]
        if self.notify:
            bits |= FLAG_NEW_LISTENER
            if bits & FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]:
                bits |= FLAG_TSYNC_ESRCH  # the kernel refuses TSYNC + NEW_LISTENER without it
        return bits


# ---- checking the section (no libseccomp needed) ----------------------------------------

def _type(v, typ, field: str):
    ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
    if not ok:
        want = {str: "a string", int: "an integer", list: "an array", dict: "an object"}[typ]
        raise ConfigError(field, f"must be {want}")
    return v


def _uint(v, field: str, limit: int):
    _type(v, int, field)
    if not 0 <= v < limit:
        raise ConfigError(field, f"{v} is out of range (0..{limit - 1})")
    return v


def _action(name, field: str) -> str:
    _type(name, str, field)
    if name not in ACTIONS:
        raise ConfigError(field, f"unknown action {name!r} (want one of {', '.join(ACTIONS)})")
    return name


def _errno(raw: dict, key: str, action: str, field: str):
    v = raw.get(key)
    if v is None:
        return None
    _uint(v, f"{field}.{key}", 1 << 16)
    if action not in WITH_ERRNO:
        raise ConfigError(f"{field}.{key}", f"{action} takes no errno (only "
                                            f"{' and '.join(WITH_ERRNO)} do)")
    return v


def parse(raw: dict, field: str = FIELD) -> Profile:
    """Check a linux.seccomp object; every error names the field."""
    _type(raw, dict, field)
    if raw.get("defaultAction") is None:
        raise ConfigError(f"{field}.defaultAction", "is required")
    default = _action(raw["defaultAction"], f"{field}.defaultAction")
    if default == "SCMP_ACT_NOTIFY":
        raise ConfigError(f"{field}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default "
                                                    "action (every syscall would wait on the agent)")
    default_errno = _errno(raw, "defaultErrnoRet", default, field)

    archs = []
    for i, a in enumerate(_type(raw.get("architectures") or [], list, f"{field}.architectures")):
        f = f"{field}.architectures[{i}]"
        _type(a, str, f)
        if a in NEWER_ARCHS:
            raise ConfigError(f, f"{a} needs libseccomp 2.6; this runtime is linked with an older one")
        if a not in ARCHS:
            raise ConfigError(f, f"unknown architecture {a!r}")
        archs.append(a)

    flags = []
    for i, fl in enumerate(_type(raw.get("flags") or [], list, f"{field}.flags")):
        f = f"{field}.flags[{i}]"
        _type(fl, str, f)
        if fl not in FLAGS:
            raise ConfigError(f, f"unknown flag {fl!r} (want one of {', '.join(FLAGS)})")
        flags.append(fl)

    path = raw.get("listenerPath") or ""
    _type(path, str, f"{field}.listenerPath")
    meta = raw.get("listenerMetadata") or ""
    _type(meta, str, f"{field}.listenerMetadata")
    if meta and not path:
        raise ConfigError(f"{field}.listenerMetadata", "must not be set without listenerPath")
    if path and not os.path.isabs(path):
        raise ConfigError(f"{field}.listenerPath", f"{path!r} must be an absolute path")

    rules = []
    for i, r in enumerate(_type(raw.get("syscalls") or [], list, f"{field}.syscalls")):
        f = f"{field}.syscalls[{i}]"
        _type(r, dict, f)
        names = _type(r.get("names") or [], list, f"{f}.names")
        if not names:
            raise ConfigError(f"{f}.names", "must name at least one syscall")
        for j, n in enumerate(names):
            _type(n, str, f"{f}.names[{j}]")
        if r.get("action") is None:
            raise ConfigError(f"{f}.action", "is required")
        action = _action(r["action"], f"{f}.action")
        errno_ret = _errno(r, "errnoRet", action, f)
        args = []
        for k, a in enumerate(_type(r.get("args") or [], list, f"{f}.args")):
            af = f"{f}.args[{k}]"
            _type(a, dict, af)
            for key in ("index", "value", "op"):
                if a.get(key) is None:
                    raise ConfigError(f"{af}.{key}", "is required")
            index = _type(a["index"], int, f"{af}.index")
            if not 0 <= index <= MAX_ARG_INDEX:
                raise ConfigError(f"{af}.index", f"{index} is not a syscall argument "
                                                 f"(0..{MAX_ARG_INDEX})")
            op = _type(a["op"], str, f"{af}.op")
            if op not in OPERATORS:
                raise ConfigError(f"{af}.op", f"unknown operator {op!r} "
                                              f"(want one of {', '.join(OPERATORS)})")
            args.append(Arg(index, _uint(a["value"], f"{af}.value", _U64),
                            _uint(a.get("valueTwo") or 0, f"{af}.valueTwo", _U64), op))
        if action == "SCMP_ACT_NOTIFY":
            if not path:
                raise ConfigError(f"{f}.action", "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
            bad = [n for n in names if n in NOTIFY_FORBIDDEN]
            if bad:
                raise ConfigError(f"{f}.names", f"SCMP_ACT_NOTIFY cannot be used on {bad[0]}: "
                                                "the runtime needs it to hand the listener over")
        rules.append(Rule(tuple(names), action, errno_ret, tuple(args)))

    prof = Profile(default_action=default, default_errno=default_errno, archs=tuple(archs),
                   flags=tuple(flags), listener_path=path, listener_metadata=meta,
                   rules=tuple(rules))
    if "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" in flags and not prof.notify:
        i = flags.index("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
        raise ConfigError(f"{field}.flags[{i}]", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV "
                                                 "needs a SCMP_ACT_NOTIFY rule")
    return prof


def action_value(action: str, errno_ret=None) -> int:
    v = ACTIONS[action]
    if action in WITH_ERRNO:
        v |= EPERM if errno_ret is None else errno_ret
    return v


# ---- what the kernel and libseccomp support ------------------------------------------------

def supported_flags() -> list:
    """The known flags the running kernel accepts."""
    from .._shim import lib

    out = []
    for name, bit in FLAGS.items():
        probe = bit | FLAG_NEW_LISTENER if name.endswith("WAIT_KILLABLE_RECV") else bit
        if lib.rc_seccomp_flag_supported(probe):
            out.append(name)
    return out


def _lib_arch(name: str) -> str:
    return name[len("SCMP_ARCH_"):].lower()


# ---- compiling -------------------------------------------------------------------------

def compile(prof: Profile, field: str = FIELD) -> bytes:
    """The BPF program (struct sock_filter[] as bytes) for `prof`."""
    from .._seccomp import ffi, lib

    for i, name in enumerate(prof.flags):
        if name not in supported_flags():
            raise ConfigError(f"{field}.flags[{i}]", f"{name} is not supported by this kernel")
    default = action_value(prof.default_action, prof.default_errno)
    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise ConfigError(f"{field}.defaultAction", f"libseccomp refused {prof.default_action}")
    try:
        # the child sets no_new_privs itself when the config asks; libseccomp must not
        lib.seccomp_attr_set(ctx, lib.SCMP_FLTATR_CTL_NNP, 0)
        # the rules as a binary tree of syscall numbers, not a list: the same decisions
        # (libseccomp), in a few comparisons per call instead of hundreds, and the kernel,
        # which emulates the filter for each syscall number when it is loaded (the action
        # cache), loads the default profile in half the time (0.5 ms, not 1.1, here).
        # libseccomp before 2.5 refuses the attribute: the list it makes then is as good.
        lib.seccomp_attr_set(ctx, lib.SCMP_FLTATR_CTL_OPTIMIZE, 2)
        tokens = [lib.seccomp_arch_native()]
        for i, a in enumerate(prof.archs):
            token = lib.seccomp_arch_resolve_name(_lib_arch(a).encode())
            if token == 0:
                raise ConfigError(f"{field}.architectures[{i}]", f"libseccomp does not know {a}")
            if token not in tokens:
                tokens.append(token)
            if lib.seccomp_arch_exist(ctx, token) == 0:
                continue  # the native one is there from seccomp_init
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0:
                raise ConfigError(f"{field}.architectures[{i}]",
                                  f"libseccomp cannot add {a}: {os.strerror(-rc)}")
        for i, rule in enumerate(prof.rules):
            _add_rule(ctx, rule, default, f"{field}.syscalls[{i}]")
        # syscalls newer than the profile: ENOSYS, not the default action (as runc)
        return enosys.patch(prof, _export(ctx), tokens)
    finally:
        lib.seccomp_release(ctx)


def _add_rule(ctx, rule: Rule, default: int, field: str) -> None:
    from .._seccomp import ffi, lib

    action = action_value(rule.action, rule.errno_ret)
    if action == default:
        return  # libseccomp refuses a rule that does what the default does; it is a no-op
    # libseccomp ANDs conditions on distinct arguments; several on one argument are ORed,
    # one rule each, as runc does
    indexes = [a.index for a in rule.args]
    if len(set(indexes)) == len(indexes):
        groups = [rule.args]
    else:
        groups = [(a,) for a in rule.args]
    arrays = []
    for group in groups:
        arr = ffi.new("struct scmp_arg_cmp[]", max(len(group), 1))
        for k, a in enumerate(group):
            arr[k].arg = a.index
            arr[k].op = OPERATORS[a.op]
            arr[k].datum_a = a.value
            arr[k].datum_b = a.value_two
        arrays.append((arr, len(group)))
    for name in rule.names:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == -1:  # __NR_SCMP_ERROR: not a syscall libseccomp knows; skipped like runc
            continue
        for arr, n in arrays:
            rc = lib.seccomp_rule_add_array(ctx, action, nr, n, arr)
            if rc == 0:
                continue
            if nr < 0 and rc in (-22, -34):  # a pseudo number: no arch of the filter has it
                continue
            raise ConfigError(f"{field}", f"libseccomp refused the rule for {name!r}: "
                                          f"{os.strerror(-rc)}")


def _export(ctx) -> bytes:
    from .._seccomp import lib

    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise StartError(f"{FIELD}: exporting the filter: {os.strerror(-rc)}", -rc, FIELD)
        size = os.lseek(fd, 0, os.SEEK_CUR)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


# ---- planning ------------------------------------------------------------------------------

CAP_SYS_ADMIN = 21


def plan_op(plan, prof: Profile, bpf: bytes) -> None:
    """Add the op that loads `bpf` (and sends the listener fd when a rule notifies)."""
    from .. import ops as P

    notify = prof.notify
    plan.seccomp_notify = notify
    plan.seccomp_listener = prof.listener_path
    plan.seccomp_metadata = prof.listener_metadata
    what = f"{len(bpf) // 8} BPF instructions"
    if notify:
        what += f", listener for {prof.listener_path}"
    plan.add(f"linux.seccomp: loading the filter ({what})", P.SECCOMP, data=bpf,
             flags=prof.kernel_flags(), a=1 if notify else 0)


# ---- SCMP_ACT_NOTIFY: the listener fd goes to the agent -------------------------------

def send_listener(plan, fd: int, pid: int, state_json: bytes) -> None:
    """Send the container process state (with `state_json`, the container's OCI state) and
    the listener fd (SCM_RIGHTS) to listenerPath: one message on a new connection, which is
    then closed (config-linux.md, "The Container Process State")."""
    import array
    import socket

    from .. import jsonio
    from ..spec import OCI_VERSION

    head = {"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": pid}
    if plan.seccomp_metadata:
        head["metadata"] = plan.seccomp_metadata
    data = jsonio.dumps(head)[:-1].encode() + b', "state": ' + state_json + b"}"
    path = plan.seccomp_listener
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            sent = s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       array.array("i", [fd]))])
            if sent < len(data):
                s.sendall(data[sent:])
    except OSError as e:
        raise StartError(f"{FIELD}.listenerPath: sending the seccomp fd to {path}: "
                         f"{e.strerror or e}", e.errno or 0, f"{FIELD}.listenerPath") from None
