/* Who the process is: the uid/gid changes, the bounding set, capabilities, seccomp, the
 * last capability the kernel knows. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <linux/seccomp.h>

#include "shim.h"
#include "security.h"
#include "child.h"

/* The id changes as raw syscalls: glibc's setresuid/setgroups wrappers signal every other
 * thread of the process (its thread list, copied from a parent with threads, names threads
 * that do not exist in this child) and wait for them forever. A program running containers
 * from several threads (libcontainer.run_many) hung there. */
int id_setresuid(uid_t u) { return (int)syscall(SYS_setresuid, u, u, u); }
int id_setresgid(gid_t g) { return (int)syscall(SYS_setresgid, g, g, g); }


/* Dropping from the bounding set needs CAP_SETPCAP: done before the uid changes. */
int drop_bounding(unsigned long long keep, int last_cap)
{
    for (int cap = 0; cap <= last_cap; cap++)
        if (!(keep & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    return 0;
}

int set_caps(const struct rc_op *op, int last_cap)
{
    /* b: effective, c: permitted, d: inheritable, e: ambient */
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(op->b >> (32 * i));
        data[i].permitted = (uint32_t)(op->c >> (32 * i));
        data[i].inheritable = (uint32_t)(op->d >> (32 * i));
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    for (int cap = 0; cap <= last_cap; cap++)
        if ((op->e & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return -1;
    return 0;
}

int load_seccomp(const struct rc_op *op, int index)
{
    struct sock_fprog prog = { (unsigned short)(op->len / sizeof(struct sock_filter)),
                               (struct sock_filter *)op->data };
    unsigned long flags = op->flags;
    if (op->a)
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
    int rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (rc < 0)
        return -1;
    if (op->a) {
        /* the listener fd goes to the parent, which hands it to listenerPath; nothing
         * of the container runs until it is delivered (or the parent gives up and kills us) */
        if (send_fd(rc, index) < 0)
            return -1;
        close(rc);
        wait_go(index);
    }
    return 0;
}


int last_cap(void)
{
    char buf[16] = { 0 };
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 40;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? atoi(buf) : 40;
}
