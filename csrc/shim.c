/* The mechanism: clone the container's init and run a plan that Python already decided.
 *
 * The child never returns into Python: after clone it runs only this file and those
 * child.h declares (mounts.c, paths.c, identity.c, console.c, hooks.c, exec.c), using no heap
 * (the parent may have had threads holding malloc's locks), and either execs or reports
 * (op index, errno) on the sync socket and exits. */
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

/* thread-local: children cloned with CLONE_VM (share_memory) from several threads at once
 * each set the copy of the thread that cloned them (that thread waits, suspended) */
__thread int sync_fd = -1;
/* the container's state JSON, sent by the parent with a go: the hooks' stdin */
char state_buf[65536];
size_t state_len;

/* ---- talking to the parent --------------------------------------------------------- */

static void send_msg(int type, int op, int err, int pid)
{
    struct rc_msg m = { type, op, err, pid };
    ssize_t n;
    do n = send(sync_fd, &m, sizeof m, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
}

__attribute__((noreturn)) void fail(int op, int err)
{
    send_msg(MSG_ERROR, op, err, 0);
    _exit(1);
}

/* Block until the parent says go. EOF means the parent died or gave up: so do we. A go
 * longer than one byte carries the state JSON for the hooks. */
void wait_go(int op)
{
    ssize_t n;
    do n = read(sync_fd, state_buf, sizeof state_buf - 1); while (n < 0 && errno == EINTR);
    if (n < 1)
        _exit(1);
    if (n > 1) {
        state_len = (size_t)n;
        state_buf[n] = '\0';
    }
    (void)op;
}

int send_fd(int fd, int op)
{
    struct rc_msg m = { MSG_FD, op, 0, 0 };
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { &m, sizeof m };
    struct msghdr mh = { 0 };
    memset(cbuf, 0, sizeof cbuf);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sync_fd, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}


int loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(s);
    errno = e;
    return rc;
}


/* A created container's init is runc's Go init in runc: `kill` of a created container
 * must do what Go's runtime does with the signal. HUP, INT and TERM end it (by the signal,
 * or with status 2 where it is the init of a pid namespace, which the kernel spares from
 * its own default actions); QUIT, ILL, TRAP, ABRT, BUS, FPE, SEGV, STKFLT and SYS end it
 * with status 2; every other signal is caught and has no effect. Without these handlers,
 * a pid namespace's init would ignore them all, and without one, USR1 would kill it. */
static void created_fatal(int sig)
{
    signal(sig, SIG_DFL);
    if (sig == SIGHUP || sig == SIGINT || sig == SIGTERM) {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
    }
    _exit(2);
}

static void created_ignore(int sig)
{
    (void)sig;
}

static void created_signals(int on)
{
    static const int fatal[] = { SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGILL, SIGTRAP, SIGABRT,
                                 SIGBUS, SIGFPE, SIGSEGV, SIGSTKFLT, SIGSYS };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    for (int sig = 1; sig <= SIGRTMAX; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD || sig == SIGCONT ||
            sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU || sig == SIGURG ||
            sig == SIGWINCH)
            continue;  /* Go leaves these at their defaults (stop, ignore) too */
        if (sig >= 32 && sig < SIGRTMIN)
            continue;  /* the C library's own */
        int is_fatal = 0;
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
            is_fatal |= fatal[i] == sig;
        sa.sa_handler = !on ? SIG_DFL : is_fatal ? created_fatal : created_ignore;
        sa.sa_flags = SA_RESTART;
        sigaction(sig, &sa, NULL);
    }
}

static int wait_start(int fifo_fd)
{
    /* opening the fifo for writing blocks until `start` opens it for reading */
    char p[64];
    fdpath(p, sizeof p, fifo_fd);
    created_signals(1);
    send_msg(MSG_CREATED, 0, 0, 0);
    int fd;
    do fd = open(p, O_WRONLY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
    created_signals(0);
    if (fd < 0)
        return -1;
    close(fifo_fd);
    ssize_t n = write(fd, "0", 1);
    close(fd);
    return n == 1 ? 0 : -1;
}


/* ---- the child ---------------------------------------------------------------------- */

/* fds of the namespaces to join, all opened before the first setns: joining a mount
 * namespace changes what /proc/<pid>/ns/... resolves to */
int join_fds[32];

static void setup_namespaces(const struct rc_plan *plan, int in_clone)
{
    /* a network namespace made ahead stands for CLONE_NEWNET (never with a user
     * namespace: it must belong to the one the container runs in) */
    if (plan->netns_fd >= 0) {
        if (setns(plan->netns_fd, CLONE_NEWNET) < 0)
            fail(-106, errno);
        close(plan->netns_fd);
    }
    if (plan->njoins > 32)
        fail(-1, E2BIG);
    for (int i = 0; i < plan->njoins; i++)
        if ((join_fds[i] = open(plan->joins[i].path, O_RDONLY | O_CLOEXEC)) < 0)
            fail(-1 - i, errno);
    for (int i = 0; i < plan->njoins; i++) {
        if (plan->joins[i].nstype == CLONE_NEWPID)
            continue;  /* below, with a fork */
        if (setns(join_fds[i], plan->joins[i].nstype) < 0)
            fail(-1 - i, errno);
        close(join_fds[i]);
        /* become root of a joined user namespace: the host's uid 0 is not mapped there,
         * and the filesystems mounted next would refuse an unmapped owner (EOVERFLOW) */
        if (plan->joins[i].nstype == CLONE_NEWUSER &&
            (id_setresgid(0) < 0 || id_setresuid(0) < 0))
            fail(-1 - i, errno);
    }
    int rest = plan->clone_flags;
    if (!in_clone && (rest & CLONE_NEWUSER)) {
        if (unshare(CLONE_NEWUSER) < 0)
            fail(-100, errno);
    }
    if (plan->clone_flags & CLONE_NEWUSER) {
        /* the parent writes our uid/gid maps, then we are root in the namespace. A
         * non-dumpable process's /proc/<pid> files belong to root, which an unprivileged
         * parent is not: be dumpable only while it writes them (runc does the same). */
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        send_msg(MSG_USERNS, 0, 0, 0);
        wait_go(-100);
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        if (id_setresgid(0) < 0 || id_setresuid(0) < 0)
            fail(-100, errno);
    }
    if (!in_clone) {
        rest &= ~(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWCGROUP);
        if (rest && unshare(rest) < 0)
            fail(-101, errno);
    }
    if (plan->new_timens) {
        /* offsets can only be set before a process enters the namespace: unshare makes it
         * for our children, we write the offsets, then enter it ourselves */
        if (unshare(CLONE_NEWTIME) < 0)
            fail(-102, errno);
        if (plan->time_offsets && write_file(-1, "/proc/self/timens_offsets", plan->time_offsets) < 0)
            fail(-103, errno);
        int fd = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWTIME) < 0)
            fail(-102, errno);
        close(fd);
    }
}

static void reset_signals(void)
{
    /* Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve */
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

__attribute__((noreturn)) void child_main(const struct rc_plan *plan, int in_clone)
{
    reset_signals();
    /* The leading AFFINITY op (execCPUAffinity.initial) and EARLY writes run before
     * anything else. Affinity: the whole setup then runs on those CPUs (moving into the
     * container's cgroups, a cpuset, may change it afterwards, which the spec leaves to the
     * kernel). oom_score_adj: written while this process still has the runner's
     * credentials and is dumpable, so that its /proc/self files are its own; in a new user
     * namespace, non-dumpable, they belong to the host's root, which the namespace's root
     * may not write (runc writes it before it makes the namespaces too). */
    int first = 0;
    for (; first < plan->nops; first++) {
        const struct rc_op *op = &plan->ops[first];
        int rc;
        if (op->kind == RC_OP_AFFINITY)
            rc = syscall(SYS_sched_setaffinity, 0, (size_t)op->len, op->data);
        else if (op->kind == RC_OP_WRITE && (op->flags & RC_WRITE_EARLY))
            rc = write_file(-1, op->path, op->data);
        else
            break;
        if (rc < 0)
            fail(first, errno);
    }
    /* until execve, /proc/<pid>/exe is the runner's interpreter: keep it out of reach.
     * (Dumpable is a property of the memory: a share_memory child would make the runner
     * itself non-dumpable. It needs none: it is alone in new namespaces of its own, no
     * process of a container can reach it before it execs.) */
    if (!plan->share_memory)
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    setup_namespaces(plan, in_clone);

    int needs_fork = !in_clone && (plan->clone_flags & CLONE_NEWPID);
    for (int i = 0; !in_clone && i < plan->njoins; i++) {
        if (plan->joins[i].nstype != CLONE_NEWPID)
            continue;
        if (setns(join_fds[i], CLONE_NEWPID) < 0)
            fail(-1 - i, errno);
        close(join_fds[i]);
        needs_fork = 1;
    }
    if (needs_fork) {
        if ((plan->clone_flags & CLONE_NEWPID) && unshare(CLONE_NEWPID) < 0)
            fail(-101, errno);
        /* the new pid namespace only applies to children: fork the real init, as a
         * sibling so that the runner is its parent */
        pid_t pid = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
        if (pid < 0)
            fail(-101, errno);
        if (pid > 0) {
            send_msg(MSG_CHILD, 0, 0, pid);
            _exit(0);
        }
    }
    /* Join the v1 cgroups ourselves: a thread moving itself ("0" to `tasks`) skips the
     * global threadgroup lock (an RCU grace period, ~1 ms per hierarchy) that moving
     * another process by pid takes. Nothing of the container has run yet. */
    for (int i = 0; i < plan->ncgroup_files; i++)
        if (write_file(-1, plan->cgroup_files[i], "0") < 0)
            fail(-105, errno);
    if (!plan->share_memory) {
        send_msg(MSG_WAITGO, 0, 0, 0);
        wait_go(-1);
    }
    /* only now, after the parent put us in the container's cgroups: the new cgroup
     * namespace's root is the container's cgroup, not the runner's */
    if ((plan->clone_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0)
        fail(-101, errno);

    if (plan->stdio) {
        for (int i = 0; i < 3; i++)
            if (plan->stdio[i] >= 0 && plan->stdio[i] != i && dup2(plan->stdio[i], i) < 0)
                fail(-104, errno);
    }
    /* nothing but stdio, the kept fds and our own (close-on-exec) fds survive execve */
    if (syscall(SYS_close_range, 3 + plan->keep_fds, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        fail(-104, errno);
    for (int fd = 3; fd < 3 + plan->keep_fds; fd++)
        if (fcntl(fd, F_SETFD, 0) < 0)
            fail(-104, errno);

    int rootfd = -1;
    const char *rootfs = NULL;
    int lcap = last_cap();
    int cwd_pending = 0;
    struct entry_dir pdir = { -1, 0, "" };
    cwd_reset();
    rc_trampoline_reset();
    for (int i = first; i < plan->nops; i++) {
        const struct rc_op *op = &plan->ops[i];
        int rc = 0;
        /* the mounts may have moved the cwd (mount_on): back to the child's own before
         * any op that could resolve a relative path against it */
        switch (op->kind) {
        case RC_OP_MOUNT: case RC_OP_MASK: case RC_OP_READONLY: case RC_OP_MKDIR:
        case RC_OP_MKFILE: case RC_OP_MKNOD: case RC_OP_SYMLINK:
            break;
        default:
            if (cwd_back() < 0)
                fail(i, errno);
        }
        if (op->kind != RC_OP_MKNOD && op->kind != RC_OP_SYMLINK)
            entry_parent_drop(&pdir);
        switch (op->kind) {
        case RC_OP_ROOT_PROPAGATION:
            /* flags 0: no mount namespace of our own; "/" is the runtime's, never touched */
            rc = op->flags ? mount(NULL, "/", NULL, op->flags, NULL) : 0;
            if (rc == 0 && op->a)
                rc = parent_propagation(op->path, (unsigned long)op->a);
            if (rc == 0) {
                /* the rootfs must be a mount point of its own to be pivoted */
                rootfs = op->path;
                rc = mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL);
                if (rc == 0)
                    rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (rootfd < 0)
                    rc = -1;
            }
            break;
        case RC_OP_MOUNT: rc = do_mount(rootfd, op, i); break;
        case RC_OP_MKDIR: {
            int fd = mkdir_in_root(rootfd, op->path, (mode_t)op->a);
            rc = fd < 0 ? -1 : close(fd);
            break;
        }
        case RC_OP_MKFILE: {
            int fd = mkfile_in_root(rootfd, op->path);
            rc = fd < 0 ? -1 : close(fd);
            break;
        }
        case RC_OP_MKNOD: {
            char name[256];
            int dir = entry_parent(&pdir, rootfd, op->path, name, sizeof name);
            if (dir < 0) { rc = -1; break; }
            unlinkat(dir, name, 0);
            rc = mknodat(dir, name, (mode_t)op->a, (dev_t)op->b);
            if (rc == 0) rc = fchownat(dir, name, (uid_t)op->c, (gid_t)op->d, AT_SYMLINK_NOFOLLOW);
            if (rc == 0) rc = fchmodat(dir, name, (mode_t)op->a & 07777, 0);
            break;
        }
        case RC_OP_BIND_DEV: {
            int fd = mkfile_in_root(rootfd, op->path);
            if (fd < 0) { rc = -1; break; }
            char target[64];
            fdpath(target, sizeof target, fd);
            rc = mount(op->src, target, NULL, MS_BIND, NULL);
            int e = errno;
            close(fd);
            errno = e;
            break;
        }
        case RC_OP_SYMLINK: {
            char name[256];
            int dir = entry_parent(&pdir, rootfd, op->path, name, sizeof name);
            if (dir < 0) { rc = -1; break; }
            rc = symlinkat(op->src, dir, name);
            if (rc < 0 && errno == EEXIST)
                rc = 0;
            break;
        }
        case RC_OP_PIVOT:
            rc = pivot(op->path ? op->path : rootfs, (int)op->flags);
            if (rc == 0)
                cwd_forget();  /* the new root's "/" now: the one kept is the host's */
            if (rc == 0) {
                close(rootfd);
                rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (rootfd < 0) rc = -1;
            }
            break;
        case RC_OP_MASK: rc = do_mask(rootfd, op->path); break;
        case RC_OP_READONLY: rc = do_readonly(rootfd, op->path); break;
        case RC_OP_WRITE: rc = write_file(op->a ? rootfd : -1, op->path, op->data); break;
        case RC_OP_SETHOSTNAME: rc = sethostname(op->data, strlen(op->data)); break;
        case RC_OP_SETDOMAINNAME: rc = setdomainname(op->data, strlen(op->data)); break;
        case RC_OP_RLIMIT: {
            struct rlimit rl = { (rlim_t)op->b, (rlim_t)op->c };
            rc = setrlimit((int)op->a, &rl);
            break;
        }
        case RC_OP_LOOPBACK_UP:
            /* a namespace made ahead (rc_netns_new) had lo brought up there, off this path
             * (~0.05 ms: the device's open and every protocol's notifier) */
            rc = plan->netns_fd >= 0 ? 0 : loopback_up();
            break;
        case RC_OP_ROOT_READONLY: rc = remount("/", MS_BIND | MS_RDONLY); break;
        case RC_OP_CHDIR:
            /* a: 1, the try as root, before the uid switch (a cwd only root may reach);
             * refused, it is tried again (a: 2) as the process's user (a cwd only that
             * user may reach), as runc does */
            if (op->a == 2 && !cwd_pending)
                break;
            rc = chdir_in_root(rootfd, op->path);
            if (op->a == 1) {
                cwd_pending = rc < 0 && (errno == EACCES || errno == EPERM);
                if (cwd_pending)
                    rc = 0;
            }
            break;
        case RC_OP_USER:
            rc = prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
            if (rc == 0) rc = (int)syscall(SYS_setgroups, (size_t)plan->ngids, (const gid_t *)plan->gids);
            if (rc < 0 && errno == EPERM && plan->ngids == 0) rc = 0;  /* setgroups denied (rootless) */
            if (rc == 0) rc = id_setresgid((gid_t)op->b);
            if (rc == 0) rc = id_setresuid((uid_t)op->a);
            if (rc == 0) rc = prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
            break;
        case RC_OP_SYNC:
            send_msg(MSG_SYNC, i, 0, 0);
            wait_go(i);
            break;
        case RC_OP_HOOK: rc = run_hook(op); break;
        case RC_OP_KEYRING:
            /* KEYCTL_JOIN_SESSION_KEYRING: the container must not share the host's keys */
            rc = syscall(SYS_keyctl, 1, op->data) < 0 ? -1 : 0;
            if (rc < 0 && (errno == ENOSYS || errno == EACCES))
                rc = 0;  /* no keyring support, or denied by the profile: nothing shared */
            break;
        case RC_OP_BOUNDING: rc = drop_bounding(op->a, lcap); break;
        case RC_OP_CAPS: rc = set_caps(op, lcap); break;
        case RC_OP_NO_NEW_PRIVS: rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); break;
        case RC_OP_UMASK: umask((mode_t)op->a); break;
        case RC_OP_SECCOMP: rc = load_seccomp(op, i); break;
        case RC_OP_TRAMPOLINE: rc = rc_trampoline_make(plan, i); break;
        case RC_OP_WAIT_START:
            /* a program that cannot be executed fails `create`, as the exec op's error */
            exec_check(plan, i);
            rc = wait_start((int)op->a);
            break;
        case RC_OP_SETSID: rc = setsid() < 0 ? -1 : 0; break;
        case RC_OP_CONSOLE: rc = console(i, (uid_t)op->a, (gid_t)op->b, op->c != 0); break;
        case RC_OP_EXEC:
            /* through the sealed trampoline, so that /proc/self/exe is never the host's
             * interpreter when the container's program starts (CVE-2019-5736) */
            if (rc_exec_trampoline(plan, i, sync_fd, op->a != 0, (int)op->b - 1) < 0)
                /* never the direct exec then: /proc/self/exe would be the host's binary
                 * (CVE-2019-5736); the error names the trampoline's op where there is one */
                fail(rc_trampoline_op() >= 0 ? rc_trampoline_op() : i, errno);
            if (op->a) {  /* no trampoline in this build: without it, no init */
                errno = ENOSYS;
                rc = -1;
                break;
            }
            exec_search(plan);
            rc = -1;
            break;
        case RC_OP_MEMPOLICY:  /* inherited across execve, like the scheduler settings */
            rc = syscall(SYS_set_mempolicy, (int)op->a, op->data, (unsigned long)op->b) < 0 ? -1 : 0;
            break;
        case RC_OP_AFFINITY:   /* the raw syscall: no glibc cpu_set_t size in the way */
            rc = syscall(SYS_sched_setaffinity, 0, (size_t)op->len, op->data) < 0 ? -1 : 0;
            break;
        default:  /* personality, ioprio, scheduler (security.c) */
            rc = rc_security_op(op);
        }
        if (rc < 0)
            fail(i, errno);
    }
    fail(plan->nops, ENOEXEC);
}
