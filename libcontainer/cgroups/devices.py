"""The device allow-list: v1 devices.allow/deny lines, and for v2 an eBPF
BPF_PROG_TYPE_CGROUP_DEVICE program built here, instruction by instruction.

Both start from the same rule list, runc's (specconv.CreateCgroupConfig): the config's
`linux.resources.devices` in order, then the devices every container needs. A device in
`linux.devices` is created in /dev but gets no rule of its own: what it may be opened for is
what those rules say (engines add the allow rule themselves, as Docker's and podman's
--device do). As in runc, a default device whose path `linux.devices` lists loses its
default rule (the config's entry replaces runc's). Like runc, the list starts from "deny
everything", so a config without rules gets only the defaults. For v2 the list is first
reduced the way the v1 kernel would keep it (a default and exceptions, see `Emulator`), so
that both versions give the same answers.
"""
from __future__ import annotations

import os

# (type, major, minor, access, path); -1 is "*"; runc's AllowedDevices, in its order
DEFAULT_ALLOWED = (
    ("c", -1, -1, "m", ""), ("b", -1, -1, "m", ""),
    ("c", 1, 3, "rwm", "/dev/null"), ("c", 1, 8, "rwm", "/dev/random"),
    ("c", 1, 7, "rwm", "/dev/full"), ("c", 5, 0, "rwm", "/dev/tty"),
    ("c", 1, 5, "rwm", "/dev/zero"), ("c", 1, 9, "rwm", "/dev/urandom"),
    ("c", 136, -1, "rwm", ""), ("c", 5, 2, "rwm", ""),
    ("c", 10, 200, "rwm", ""),  # /dev/net/tun
)


class Rule:
    __slots__ = ("allow", "type", "major", "minor", "access")

    def __init__(self, allow: bool, type: str = "a", major: int = -1, minor: int = -1,
                 access: str = "rwm"):
        self.allow, self.type, self.major, self.minor = allow, type, major, minor
        self.access = "".join(c for c in "rwm" if c in access)

    def v1(self) -> str:
        """The devices.allow / devices.deny line."""
        if self.type == "a":
            return "a"
        num = lambda n: "*" if n < 0 else str(n)  # noqa: E731
        return f"{self.type} {num(self.major)}:{num(self.minor)} {self.access}"

    def __repr__(self) -> str:
        return f"Rule({'allow' if self.allow else 'deny'} {self.v1()})"


# A warm process starting containers again (libcontainer.run in a loop) computes the usual
# case once: the rules of a config with no rules of its own, by its linux.devices paths, and
# the lines a fresh directory gets for a rule list of those (the same Rule objects).
_MEMO_MAX = 64
_default_rules: dict = {}
_fresh_lines: dict = {}


def rules(resources: dict, device_paths=()) -> list:
    """The full rule list for a container: deny all, the config's rules, the defaults
    but those whose path is among `device_paths` (those of linux.devices)."""
    if resources.get("devices"):
        return _rules(resources, device_paths)
    key = tuple(device_paths)
    got = _default_rules.get(key)
    if got is None:
        if len(_default_rules) >= _MEMO_MAX:
            _default_rules.clear()
        got = _default_rules[key] = tuple(_rules(resources, device_paths))
    return list(got)


def _rules(resources: dict, device_paths=()) -> list:
    out = [Rule(False)]
    for d in resources.get("devices") or ():
        out.append(Rule(d["allow"], d.get("type") or "a",
                        -1 if d.get("major") is None else d["major"],
                        -1 if d.get("minor") is None else d["minor"], d.get("access") or "rwm"))
    listed = set(device_paths)
    out += [Rule(True, *r[:4]) for r in DEFAULT_ALLOWED if not r[4] or r[4] not in listed]
    return out


def v1_writes(rule_list: list, directory: str, fresh: bool = False) -> None:
    """Make the v1 cgroup's allow-list what `rule_list` describes. A reset to "deny all"
    ("a" to devices.deny) denies every device to the container's running processes until
    the allows after it land (an `update` made `/dev/null` fail for a moment). So when the
    cgroup already denies by default and the rules do too, only the difference is written,
    allows first. A new default needs a reset, straight to it, then the exceptions; even a
    reset to "allow all" may deny for a moment (the kernel empties the exception list
    before it flips the default), which no order of writes avoids. A `fresh` directory (just
    made: nothing runs in it) gets the reset without a look at what it inherited."""
    if fresh:
        key = tuple(rule_list)
        lines = _fresh_lines.get(key)
        if lines is None:
            if len(_fresh_lines) >= _MEMO_MAX:
                _fresh_lines.clear()
            lines = _fresh_lines[key] = _lines(_reset(_emulate(rule_list)))
        _v1_write(lines, directory)
        return
    now = v1_current(directory)
    want = _emulate(rule_list)
    if now is not None and not now.default_allow and not want.default_allow:
        writes = transition(now, want)
    else:
        writes = _reset(want)
    _v1_write(_lines(writes), directory)


def _emulate(rule_list: list) -> "Emulator":
    want = Emulator()
    for r in rule_list:
        want.apply(r)
    return want


def _reset(want: "Emulator") -> list:
    """The rules that set `want` from any state: its default, then its exceptions."""
    return [Rule(want.default_allow)] + [Rule(not want.default_allow, *key, access)
                                         for key, access in want.exceptions.items()]


def _lines(rule_list: list) -> list:
    """(devices.allow or devices.deny, the line) of each rule."""
    return [("devices.allow" if r.allow else "devices.deny", r.v1()) for r in rule_list]


def _v1_write(lines: list, directory: str) -> None:
    from ..errors import ConfigError

    fds: dict = {}  # the kernel takes one rule per write(2), any number per open
    try:
        for name, line in lines:
            try:
                fd = fds.get(name)
                if fd is None:
                    fd = fds[name] = os.open(os.path.join(directory, name),
                                             os.O_WRONLY | os.O_CLOEXEC)
                os.write(fd, line.encode())
            except OSError as e:
                raise ConfigError("linux.resources.devices", f"writing {line!r} to "
                                  f"{directory}/{name}: {e.strerror}") from None
    finally:
        for fd in fds.values():
            os.close(fd)


def v1_current(directory: str) -> "Emulator | None":
    """What the kernel keeps now, from devices.list; None when unreadable. With a default
    of allow the kernel prints only "a *:* rwm" (its exceptions stay hidden)."""
    from . import fs

    try:
        lines = fs.read(os.path.join(directory, "devices.list")).split("\n")
    except OSError:
        return None
    emu = Emulator()
    for line in filter(None, lines):
        typ, nums, access = line.split()
        if typ == "a":
            emu.default_allow = True
            emu.exceptions = {}
            return emu
        major, minor = (-1 if n == "*" else int(n) for n in nums.split(":"))
        emu.exceptions[(typ, major, minor)] = "".join(c for c in "rwm" if c in access)
    return emu


def transition(now: "Emulator", want: "Emulator") -> list:
    """Rules that turn `now` into `want`, both default-deny, without a reset: the access
    bits to add first (nothing allowed on both sides is ever denied on the way), then the
    bits to take away. The v1 kernel matches exceptions by exact type and numbers, as
    Emulator does."""
    allows, denies = [], []
    for key in dict.fromkeys([*want.exceptions, *now.exceptions]):
        have, need = now.exceptions.get(key, ""), want.exceptions.get(key, "")
        add = "".join(c for c in need if c not in have)
        drop = "".join(c for c in have if c not in need)
        if add:
            allows.append(Rule(True, *key, add))
        if drop:
            denies.append(Rule(False, *key, drop))
    return allows + denies


class Emulator:
    """What the v1 kernel keeps of a rule list: a default (allow or deny) and exceptions
    with their access bits. "a" resets everything; a rule that agrees with the default
    takes its access bits away from the exception with the same device."""

    def __init__(self) -> None:
        self.default_allow = False
        self.exceptions: dict = {}

    def apply(self, r: Rule) -> None:
        if r.type == "a":  # the kernel reads "a" alone, whatever numbers follow
            self.default_allow = r.allow
            self.exceptions = {}
            return
        key = (r.type, r.major, r.minor)
        have = self.exceptions.get(key, "")
        if r.allow != self.default_allow:
            self.exceptions[key] = "".join(c for c in "rwm" if c in have or c in r.access)
        else:
            left = "".join(c for c in have if c not in r.access)
            if left:
                self.exceptions[key] = left
            else:
                self.exceptions.pop(key, None)


# ---- the eBPF program ---------------------------------------------------------------------
# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# access_type = (access << 16) | type; type 1 block, 2 char; access 1 mknod, 2 read, 4 write.
_TYPE = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return (bytes((code, (src << 4) | dst)) + (off & 0xFFFF).to_bytes(2, "little")
            + (imm & 0xFFFFFFFF).to_bytes(4, "little"))


LDXW, AND32K, RSH32K, MOV32X, MOV64K, EXIT = 0x61, 0x54, 0x74, 0xBC, 0xB7, 0x95
JNEK, JNEX, JEQK = 0x55, 0x5D, 0x15


def program(rule_list: list) -> bytes:
    """The instructions (struct bpf_insn[]) deciding like the v1 kernel would: R2 type,
    R3 requested access, R4 major, R5 minor; each exception that matches returns the
    opposite of the default."""
    emu = Emulator()
    for r in rule_list:
        emu.apply(r)
    ret_match = 0 if emu.default_allow else 1
    code = [
        _insn(LDXW, 2, 1, 0), _insn(AND32K, 2, imm=0xFFFF),
        _insn(LDXW, 3, 1, 0), _insn(RSH32K, 3, imm=16),
        _insn(LDXW, 4, 1, 4), _insn(LDXW, 5, 1, 8),
    ]
    for (typ, major, minor), access in emu.exceptions.items():
        acc = sum(_ACCESS[c] for c in access)
        block = []  # (code, dst, src, imm, jumps to the next block)
        if typ != "a":
            block.append((JNEK, 2, 0, _TYPE[typ], True))
        block.append((MOV32X, 1, 3, 0, False))
        block.append((AND32K, 1, 0, acc, False))
        if emu.default_allow:
            # deny-list: any requested bit the exception covers denies
            block.append((JEQK, 1, 0, 0, True))
        else:
            # allow-list: every requested bit must be covered
            block.append((JNEX, 1, 3, 0, True))
        if major >= 0:
            block.append((JNEK, 4, 0, major, True))
        if minor >= 0:
            block.append((JNEK, 5, 0, minor, True))
        block.append((MOV64K, 0, 0, ret_match, False))
        block.append((EXIT, 0, 0, 0, False))
        n = len(block)
        for i, (op, dst, src, imm, jump) in enumerate(block):
            code.append(_insn(op, dst, src, n - i - 1 if jump else 0, imm))
    code.append(_insn(MOV64K, 0, imm=1 if emu.default_allow else 0))
    code.append(_insn(EXIT))
    return b"".join(code)


# ---- loading and attaching: bpf(2) through the shim ------------------------------------------
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_PROG_GET_FD_BY_ID, BPF_PROG_QUERY = 5, 8, 9, 13, 16
BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI = 15, 6, 2
_ATTR_SIZE = 128


def _bpf(cmd: int, attr: bytes, what: str):
    """→ (result, attr after the call)."""
    from .._shim import ffi, lib

    buf = ffi.new("char[]", attr.ljust(_ATTR_SIZE, b"\0"))
    r = lib.rc_bpf(cmd, buf, _ATTR_SIZE)
    if r < 0:
        raise OSError(-r, f"bpf({what}): {os.strerror(-r)}")
    return r, ffi.buffer(buf, _ATTR_SIZE)[:]


def _u32(*vals: int) -> bytes:
    return b"".join(v.to_bytes(4, "little") for v in vals)


def _u64(v: int) -> bytes:
    return v.to_bytes(8, "little")


def load(insns: bytes) -> int:
    """BPF_PROG_LOAD; the program's fd. The verifier's log comes with a failure."""
    from .._shim import ffi

    prog = ffi.new("char[]", insns)
    lic = ffi.new("char[]", b"Apache")
    log = ffi.new("char[]", 65536)
    addr = lambda b: int(ffi.cast("uintptr_t", b))  # noqa: E731
    attr = (_u32(BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8) + _u64(addr(prog)) + _u64(addr(lic))
            + _u32(0, 0) + _u64(0) + _u32(0, 0) + b"runner_devices\0\0" + _u32(0, BPF_CGROUP_DEVICE))
    try:
        fd, _ = _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")
    except OSError:
        # again with the verifier's log, to say why
        attr = attr[:24] + _u32(1, 65536) + _u64(addr(log)) + attr[40:]
        try:
            fd, _ = _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")
        except OSError as e:
            raise OSError(e.errno, f"{e.strerror}: {ffi.string(log).decode(errors='replace')}") from None
    os.set_inheritable(fd, False)
    return fd


def attached(cgroup_fd: int) -> list:
    """Ids of the device programs attached to the cgroup."""
    from .._shim import ffi

    ids = ffi.new("unsigned int[]", 64)
    attr = _u32(cgroup_fd, BPF_CGROUP_DEVICE, 0, 0) + _u64(int(ffi.cast("uintptr_t", ids))) + _u32(64)
    _, out = _bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY")
    count = int.from_bytes(out[24:28], "little")
    return [ids[i] for i in range(min(count, 64))]


def install(cgroup_dir: str, rule_list: list) -> None:
    """Attach the program for `rule_list` to the cgroup, then detach the ones attached
    before: the new rules apply at once, never on top of older ones, and at no moment is
    the cgroup without a program."""
    fd = load(program(rule_list))
    cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = attached(cg)
        _bpf(BPF_PROG_ATTACH, _u32(cg, fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI), "BPF_PROG_ATTACH")
        for prog_id in old:
            try:
                ofd, _ = _bpf(BPF_PROG_GET_FD_BY_ID, _u32(prog_id), "BPF_PROG_GET_FD_BY_ID")
            except FileNotFoundError:
                continue
            try:
                _bpf(BPF_PROG_DETACH, _u32(cg, ofd, BPF_CGROUP_DEVICE), "BPF_PROG_DETACH")
            finally:
                os.close(ofd)
    finally:
        os.close(cg)
        os.close(fd)
