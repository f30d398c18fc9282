"""ENOSYS for syscalls newer than a seccomp profile, as runc arranges (its patchbpf).

A profile that denies by default also denies every syscall added to the kernel after it was
written: clone3 or openat2 under a 2019 allowlist fail with EPERM, and libc, which falls back
to clone or openat only on ENOSYS, fails with them. So, like runc, a short program goes in
front of libseccomp's: on each of the filter's architectures, a syscall number above the
highest one the profile names gets ENOSYS ("this kernel has no such call"); everything else
goes on to the profile's own rules. A syscall the profile does not name but that is older
than one it does still gets the profile's default action.

Not added when the default action lets calls through (ALLOW, LOG, TRACE: a tracer handles
new calls itself) or already answers ENOSYS.
"""
from __future__ import annotations

import struct

# classic BPF (linux/filter.h, linux/bpf_common.h)
LD_W_ABS = 0x20
JMP_JA, JMP_JEQ_K, JMP_JGT_K, JMP_JSET_K = 0x05, 0x15, 0x25, 0x45
RET_K = 0x06
# struct seccomp_data: nr at 0, arch at 4
OFF_NR, OFF_ARCH = 0, 4
SECCOMP_RET_ERRNO = 0x00050000
ENOSYS = 38
X32_SYSCALL_BIT = 0x40000000
# libseccomp's token for x32 is not an AUDIT_ARCH_ value: the kernel reports x86_64
SCMP_ARCH_X32, AUDIT_ARCH_X86_64 = 0x4000003E, 0xC000003E
AUDIT_ARCH_S390, AUDIT_ARCH_S390X = 0x16, 0x80000016

PERMISSIVE = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")


def needed(prof) -> bool:
    return prof.default_action not in PERMISSIVE and prof.default_errno != ENOSYS


def highest_syscalls(prof, arch_tokens) -> dict:
    """AUDIT_ARCH → {"native": n} or, on x86_64, also {"x32": n}: the highest syscall number
    the profile names on each architecture (names an architecture lacks are ignored)."""
    from .._seccomp import lib

    names = {n.encode() for r in prof.rules for n in r.names}
    out: dict = {}
    for token in arch_tokens:
        top = max((lib.seccomp_syscall_resolve_name_arch(token, n) for n in names), default=-1)
        if top <= 0:
            continue  # nothing known on this architecture: leave it to the profile
        if token == SCMP_ARCH_X32:
            out.setdefault(AUDIT_ARCH_X86_64, {})["x32"] = top
        else:
            out.setdefault(token, {})["native"] = top
    return out


class _Asm:
    """Instructions with symbolic jump targets, resolved at the end."""

    def __init__(self) -> None:
        self.code: list = []      # [code, jt, jf, k]; jt/jf/k may be label names
        self.labels: dict = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, code: int, k=0, jt=0, jf=0) -> None:
        self.code.append([code, jt, jf, k])

    def assemble(self) -> bytes:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.code):
            def rel(target):
                return self.labels[target] - i - 1 if isinstance(target, str) else target
            if code == JMP_JA:
                k = rel(k)
            jt, jf = rel(jt), rel(jf)
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError("ENOSYS stub: conditional jump out of range")
            out.append(struct.pack("=HBBI", code, jt, jf, k))
        return b"".join(out)


def stub(tops: dict) -> bytes:
    """The program to put in front of the profile's (which starts by loading the arch
    again, so the accumulator may be left as it is)."""
    a = _Asm()
    a.emit(LD_W_ABS, OFF_ARCH)
    for arch in tops:
        a.emit(JMP_JEQ_K, arch, jt=f"arch{arch}")
    a.emit(JMP_JA, "filter")
    for arch, top in tops.items():
        a.label(f"arch{arch}")
        a.emit(LD_W_ABS, OFF_NR)
        if arch in (AUDIT_ARCH_S390, AUDIT_ARCH_S390X):
            # an unknown large syscall number reaches the filter as 0 (the multiplexer)
            a.emit(JMP_JEQ_K, 0, jt="enosys")
        if arch == AUDIT_ARCH_X86_64:
            # x86_64 and x32 share the arch; x32 numbers carry bit 30
            a.emit(JMP_JSET_K, X32_SYSCALL_BIT, jt=f"x32_{arch}")
            if "native" in top:
                a.emit(JMP_JGT_K, top["native"], jt="enosys")
            a.emit(JMP_JA, "filter")
            a.label(f"x32_{arch}")
            if "x32" in top:
                a.emit(JMP_JGT_K, top["x32"], jt="enosys")
            a.emit(JMP_JA, "filter")
        else:
            a.emit(JMP_JGT_K, top["native"], jt="enosys")
            a.emit(JMP_JA, "filter")
    a.label("enosys")
    a.emit(RET_K, SECCOMP_RET_ERRNO | ENOSYS)
    a.label("filter")
    return a.assemble()


def patch(prof, bpf: bytes, arch_tokens) -> bytes:
    """`bpf` with the stub in front when the profile needs one."""
    if not needed(prof):
        return bpf
    tops = highest_syscalls(prof, arch_tokens)
    return stub(tops) + bpf if tops else bpf
