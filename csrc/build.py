"""cffi build of libcontainer._shim: the C side of the runtime (see shim.h)."""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

# libseccomp is used by the parent to compile filters (security/seccomp.py); the child only
# loads the resulting BPF, so these declarations never run after clone.
SECCOMP_CDEF = """
struct scmp_version { unsigned int major; unsigned int minor; unsigned int micro; };
const struct scmp_version *seccomp_version(void);
"""

# Generic syscalls for the parent (csrc/sys.c): bpf(2) for cgroup v2 device programs.
SYS_CDEF = """
long rc_bpf(int cmd, void *attr, unsigned int size);
"""

ffi = FFI()
with open(os.path.join(HERE, "shim.h")) as f:
    ffi.cdef(f.read() + SECCOMP_CDEF + SYS_CDEF)
ffi.set_source(
    "libcontainer._shim",
    '#include "shim.h"\n#include <seccomp.h>\n' + SYS_CDEF,
    sources=[os.path.relpath(os.path.join(HERE, "shim.c")),
             os.path.relpath(os.path.join(HERE, "sys.c"))],
    include_dirs=[HERE],
    libraries=["seccomp"],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-result"],
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
