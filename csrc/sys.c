/* Tiny generic syscall wrappers for the parent's side (never used by the child). Python
 * has no bpf(2); libcontainer/cgroups/devices.py builds the attr structs itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

/* bpf(cmd, attr, size): the result, or -errno */
long rc_bpf(int cmd, void *attr, unsigned int size)
{
    long r = syscall(SYS_bpf, cmd, attr, size);
    return r < 0 ? -errno : r;
}
