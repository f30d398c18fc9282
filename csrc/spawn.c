/* The parent's side: clone3 the child (sharing memory when the parent has nothing to do
 * before its execve), network namespaces made ahead, id-mapped mounts. */
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

/* ---- the parent's side -------------------------------------------------------------- */

struct rc_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

/* An fd of a new user namespace with these uid_map/gid_map lines (for MOUNT_ATTR_IDMAP):
 * a child is cloned into it, given the maps, and its namespace opened; the child is gone
 * on return. Returns the fd (close-on-exec) or -errno. */
static int rc_userns_fd(const char *uid_map, const char *gid_map)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    /* fork-like (no CLONE_VM): the child only waits for the pipe to close */
    pid_t pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    if (pid == 0) {
        char c;
        close(p[1]);
        while (read(p[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close(p[0]);
    char path[64];
    int rc = 0, fd = -1;
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    if (write_file(-1, path, uid_map) < 0)
        rc = -errno;
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    if (rc == 0 && write_file(-1, path, gid_map) < 0)
        rc = -errno;
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    if (rc == 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        rc = -errno;
    close(p[1]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return rc < 0 ? rc : fd;
}

int rc_idmapped_mount(int pid, const char *src, const char *uid_map, const char *gid_map,
                      int rec, int ridmap, int target)
{
    /* no maps: a plain bind, made here because the source is out of the reach of the
     * container's user namespace (a directory only the host's root may enter) */
    int userns = -1;
    if (uid_map && *uid_map && (userns = rc_userns_fd(uid_map, gid_map)) < 0)
        return userns;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
    int mntns = open(path, O_RDONLY | O_CLOEXEC);
    int p[2] = { -1, -1 };
    if (mntns < 0 || pipe2(p, O_CLOEXEC) < 0) {
        int e = errno;
        if (userns >= 0)
            close(userns);
        if (mntns >= 0)
            close(mntns);
        return -e;
    }
    /* fork-like (no CLONE_VM, no CLONE_FS): a process of its own may change its mount
     * namespace, and the kernel attaches a detached tree only in the namespace it was
     * made in */
    pid_t h = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (h == 0) {
        int err = 0, tree = -1;
        if (setns(mntns, CLONE_NEWNS) < 0)
            err = errno;
        if (!err && (tree = syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE |
                                    OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0))) < 0)
            err = errno;
        struct rc_mount_attr attr = { RC_MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns };
        if (!err && userns >= 0 &&
            syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (ridmap ? AT_RECURSIVE : 0),
                    &attr, sizeof attr) < 0)
            err = errno;
        if (!err && syscall(SYS_move_mount, tree, "", target, "",
                            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            err = errno;
        if (write(p[1], &err, sizeof err) < 0)
            _exit(1);
        _exit(0);
    }
    int err = h < 0 ? errno : 0;
    close(p[1]);
    if (h > 0) {
        ssize_t n;
        do n = read(p[0], &err, sizeof err); while (n < 0 && errno == EINTR);
        if (n != sizeof err)
            err = EIO;
        while (waitpid(h, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    close(p[0]);
    close(mntns);
    if (userns >= 0)
        close(userns);
    return -err;
}

#if defined(__x86_64__)
/* clone3 with a stack of its own for the child, which calls fn(arg) there and never returns
 * (glibc has no public clone3 wrapper; a child on a new stack cannot return through C). */
long rc_clone3_on_stack(struct rc_clone_args *args, size_t size, void (*fn)(void *), void *arg)
    __attribute__((visibility("hidden")));
__asm__(".text\n"
        ".globl rc_clone3_on_stack\n"
        ".hidden rc_clone3_on_stack\n"
        ".type rc_clone3_on_stack,@function\n"
        "rc_clone3_on_stack:\n"
        "  mov %rcx, %r8\n"          /* arg: rcx does not survive syscall */
        "  mov %rdx, %r9\n"          /* fn */
        "  mov $435, %eax\n"         /* SYS_clone3 */
        "  syscall\n"
        "  test %rax, %rax\n"
        "  jz 1f\n"
        "  ret\n"
        "1:\n"
        "  xor %ebp, %ebp\n"
        "  mov %r8, %rdi\n"
        "  call *%r9\n"
        "  mov $60, %eax\n"          /* SYS_exit: fn does not return */
        "  xor %edi, %edi\n"
        "  syscall\n"
        "  hlt\n");

struct vfork_ctx {
    const struct rc_plan *plan;
    int sv[2];
};

static void vfork_child(void *p)
{
    struct vfork_ctx *c = p;
    close(c->sv[0]);
    sync_fd = c->sv[1];
    child_main(c->plan, 1);
}

/* The child shares the runner's memory and the runner's thread waits until it has exec'd
 * (or exited): nothing of the interpreter's memory is copied, at the clone or afterwards
 * (each page the interpreter writes while a forked child lives would be copied first).
 * Only for a plan that needs nothing from the parent before the execve. -errno, or -1000
 * when this clone is not possible (the caller forks as usual). */
static pid_t spawn_sharing_memory(const struct rc_plan *plan, struct rc_clone_args *args,
                                  int sv[2])
{
    size_t size = 1 << 20;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
                       MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -1000;
    struct vfork_ctx ctx = { plan, { sv[0], sv[1] } };
    args->flags |= CLONE_VM | CLONE_VFORK;
    args->stack = (uint64_t)(uintptr_t)stack;
    args->stack_size = size;
    long pid = rc_clone3_on_stack(args, sizeof *args, vfork_child, &ctx);
    /* here the child has exec'd or exited: its stack is free */
    munmap(stack, size);
    args->flags &= ~(uint64_t)(CLONE_VM | CLONE_VFORK);
    args->stack = args->stack_size = 0;
    if (pid == -ENOSYS || pid == -E2BIG || pid == -EINVAL)
        return -1000;
    return (pid_t)pid;
}
#endif

static int netns_child(void *arg)
{
    /* lo up here, as the child entering the namespace would (RC_OP_LOOPBACK_UP): a
     * container's namespace has it up before its process runs either way */
    int fd = loopback_up() < 0 ? -1 : open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    *(int *)arg = fd < 0 ? -errno : fd;
    return 0;
}

int rc_netns_new(void)
{
    /* CLONE_VFORK: this thread waits on the stack the child runs on; CLONE_FILES: the fd
     * the child opens is ours; exit signal 0: no SIGCHLD, and no waitpid(-1) of the
     * program can reap it (only __WALL) */
    char stack[16384] __attribute__((aligned(16)));
    int out = -EINVAL;
    /* no signal handler of the program may run on the child's borrowed stack (a Ctrl-C
     * reaches the whole process group): the child starts with everything blocked */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(netns_child, stack + sizeof stack,
                      CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_NEWNET, &out);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return -e;
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
    return out;
}

int rc_spawn(const struct rc_plan *plan, int *sock)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* Namespaces are created by clone itself unless one has to be joined first: joining
     * needs the host's privileges, which a new user namespace would already have dropped. */
    int in_clone = plan->njoins == 0;
    /* the cgroup namespace is made later, once the child is in its cgroups */
    uint64_t flags = in_clone ? (uint64_t)(plan->clone_flags & ~CLONE_NEWCGROUP) : 0;
    struct rc_clone_args args = { 0 };
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    if (plan->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)plan->cgroup_fd;
    }
    pid_t pid = -1000;
#if defined(__x86_64__)
    if (plan->share_memory && in_clone) {
        pid = spawn_sharing_memory(plan, &args, sv);
        if (pid < 0 && pid != -1000) {
            close(sv[0]);
            close(sv[1]);
            return pid;
        }
    }
#endif
    if (pid == -1000)
        pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && (errno == ENOSYS || errno == E2BIG) && plan->cgroup_fd < 0)
        pid = syscall(SYS_clone, (unsigned long)flags | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return -e;
    }
    if (pid == 0) {
        close(sv[0]);
        sync_fd = sv[1];
        child_main(plan, in_clone);
    }
    close(sv[1]);
    *sock = sv[0];
    return pid;
}

int rc_recv(int sock, void *buf, int size, int timeout_ms, int *fd)
{
    /* room for one fd, as socket.recvmsg(size, CMSG_SPACE(4)) had: a message carrying more
     * would have the rest closed by the kernel (MSG_CTRUNC), which the child never sends */
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { buf, (size_t)size };
    struct msghdr msg = { 0 };
    struct pollfd p = { sock, POLLIN, 0 };
    *fd = -1;
    int r = poll(&p, 1, timeout_ms);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    ssize_t n = recvmsg(sock, &msg, 0);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len >= CMSG_LEN(sizeof(int)))
            memcpy(fd, CMSG_DATA(c), sizeof(int));
    return (int)n;
}
