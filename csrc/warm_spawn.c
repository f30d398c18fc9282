/* runner/warm-spawn: the caller's half of a `create` or `run` served by the warm server
 * (runner/warm.py; the worker's half is runner/warm_spawn.py).
 *
 * Why a program of its own: a container's init must be the caller's descendant (an
 * engine's shim is a child subreaper and must see the init exit; a foreground `run` is the
 * parent that waits), and a process can only clone its own children. So the worker
 * computes the plan as the plain path does, and this program, exec'd by the launcher in
 * the caller's own process (csrc/warm_client.h, on the worker's 'P' reply), clones it with
 * the shim's own code (rc_spawn of spawn.c and the child's sources, linked in), so the
 * child is set up by exactly the C of the plain path. The launcher itself stays without
 * libc (every verb pays its start-up); only a served create/run pays this exec (~0.5 ms).
 *
 * Its argv is the caller's (`ps` shows the command as called); RUNNER_WARM_SPAWN=CONN,CHAN,FLAGS
 * names the rest. CONN is the launcher's connection to the server (its
 * final 8-byte reply, 'E' status or 'S' signal, ends this process as it ends the
 * launcher); CHAN is a SOCK_SEQPACKET socket to the worker, which asks, one message each:
 *   'C' clone:  u32 'C', u32 nfds, i32 worker's fd numbers [nfds], then the packed plan
 *               (runner/warm_spawn.py: pack), with those fds over SCM_RIGHTS
 *               -> i32 pid or -errno, with the sync socket over SCM_RIGHTS
 *   'W' wait:   u32 'W', i32 pid, i32 options (WNOHANG), i32 forward (signals go to pid
 *               from now on) -> i32 pid/0/-errno, i32 wait status
 * FLAGS 1: forward HUP INT QUIT USR1 USR2 TERM WINCH to the process of the first 'W' with
 * forward set (a foreground `run`, as launch.Forwarder does), queued until then. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"

#define MAX_PLAN (1 << 22)
#define MAX_FDS 16

static volatile sig_atomic_t target;   /* where forwarded signals go, 0: queue them */
static volatile sig_atomic_t pending[65];
static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM, SIGWINCH};

static void on_signal(int sig)
{
    int e = errno;
    if (target > 0)
        kill(target, sig);
    else if (sig != SIGWINCH)
        pending[sig] = 1;
    errno = e;
}

static void attach(pid_t pid)
{
    target = pid;
    for (int i = 1; i < 65; i++)
        if (pending[i]) {
            pending[i] = 0;
            kill(pid, i);
        }
}

/* ---- the packed plan: the layout runner/warm_spawn.py writes -------------------------- */

/* every number an int64; strings and byte blobs as 1 + their offset in the string table
 * (0: NULL) */
enum { H_CLONE_FLAGS, H_NEW_TIMENS, H_TIME_OFFSETS, H_NJOINS, H_CGROUP_FD, H_NCGROUP_FILES,
       H_NOPS, H_ARGC, H_ENVC, H_PATH_ENV, H_NGIDS, H_KEEP_FDS, H_HAS_STDIO, H_STDIO0,
       H_STDIO1, H_STDIO2, H_SHARE_MEMORY, H_NETNS_FD, H_OP_SIZE, H_STRINGS_LEN, H_COUNT };

struct unpacked {
    struct rc_plan plan;
    int stdio[3];
};

static int nfds, worker_fd[MAX_FDS], our_fd[MAX_FDS];
static int conn = -1;  /* CONN: the server's final reply comes on it */

/* the fd of ours that stands for the worker's fd `fd` (-1 stays -1) */
static int map_fd(long long fd, int *out)
{
    if (fd < 0) {
        *out = -1;
        return 0;
    }
    for (int i = 0; i < nfds; i++)
        if (worker_fd[i] == fd) {
            *out = our_fd[i];
            return 0;
        }
    return -EBADF;
}

static int unpack(char *buf, size_t size, struct unpacked *u)
{
    int64_t h[H_COUNT];
    if (size < sizeof h)
        return -EINVAL;
    memcpy(h, buf, sizeof h);
    if (h[H_OP_SIZE] != (int64_t)sizeof(struct rc_op) || h[H_NJOINS] < 0 || h[H_NOPS] < 0 ||
        h[H_ARGC] < 0 || h[H_ENVC] < 0 || h[H_NGIDS] < 0 || h[H_NCGROUP_FILES] < 0 ||
        h[H_STRINGS_LEN] < 0 || h[H_NOPS] > 1 << 16 || h[H_ARGC] > 1 << 20 ||
        h[H_ENVC] > 1 << 20 || h[H_NJOINS] > 64 || h[H_NGIDS] > 1 << 16 ||
        h[H_NCGROUP_FILES] > 64)
        return -EINVAL;
    size_t need = sizeof h + 16 * h[H_NJOINS] + 8 * h[H_NCGROUP_FILES] +
                  sizeof(struct rc_op) * h[H_NOPS] + 8 * (h[H_ARGC] + 1) + 8 * (h[H_ENVC] + 1) +
                  8 * h[H_NGIDS] + h[H_STRINGS_LEN];
    if (need != size)
        return -EINVAL;
    char *at = buf + sizeof h, *strings = buf + size - h[H_STRINGS_LEN];
    uint64_t slen = h[H_STRINGS_LEN];
    /* an offset into the string table as a pointer; a string must end inside it */
#define STR(off, dst)                                                                   \
    do {                                                                                \
        uint64_t o_ = (uint64_t)(off);                                                  \
        if (o_ == 0) {                                                                  \
            (dst) = NULL;                                                               \
        } else {                                                                        \
            if (o_ > slen || !memchr(strings + o_ - 1, 0, slen - (o_ - 1)))             \
                return -EINVAL;                                                         \
            (dst) = strings + o_ - 1;                                                   \
        }                                                                               \
    } while (0)
    struct rc_plan *p = &u->plan;
    memset(p, 0, sizeof *p);
    p->clone_flags = (int)h[H_CLONE_FLAGS];
    p->new_timens = (int)h[H_NEW_TIMENS];
    STR(h[H_TIME_OFFSETS], p->time_offsets);
    p->njoins = (int)h[H_NJOINS];
    struct rc_ns_join *joins = calloc(p->njoins + 1, sizeof *joins);
    if (!joins)
        return -ENOMEM;
    for (int i = 0; i < p->njoins; i++, at += 16) {
        int64_t j[2];
        memcpy(j, at, 16);
        joins[i].nstype = (int)j[0];
        STR(j[1], joins[i].path);
    }
    p->joins = joins;
    if (map_fd(h[H_CGROUP_FD], &p->cgroup_fd) < 0 || map_fd(h[H_NETNS_FD], &p->netns_fd) < 0)
        return -EBADF;
    p->ncgroup_files = (int)h[H_NCGROUP_FILES];
    const char **files = calloc(p->ncgroup_files + 1, sizeof *files);
    if (!files)
        return -ENOMEM;
    for (int i = 0; i < p->ncgroup_files; i++, at += 8) {
        int64_t o;
        memcpy(&o, at, 8);
        STR(o, files[i]);
    }
    p->cgroup_files = files;
    p->nops = (int)h[H_NOPS];
    struct rc_op *ops = calloc(p->nops + 1, sizeof *ops);
    if (!ops)
        return -ENOMEM;
    memcpy(ops, at, sizeof *ops * p->nops);
    at += sizeof *ops * p->nops;
    for (int i = 0; i < p->nops; i++) {
        struct rc_op *o = &ops[i];
        STR((uintptr_t)o->path, o->path);
        STR((uintptr_t)o->src, o->src);
        STR((uintptr_t)o->fstype, o->fstype);
        if (o->len > 0) {  /* bytes: not NUL-terminated, its length in len */
            uint64_t off = (uintptr_t)o->data;
            if (off == 0 || off - 1 + (uint64_t)o->len > slen)
                return -EINVAL;
            o->data = strings + off - 1;
        } else {
            STR((uintptr_t)o->data, o->data);
        }
        /* the fds an op names: the exec fifo, the init's status fd */
        int fd;
        if (o->kind == RC_OP_WAIT_START) {
            if (map_fd((long long)o->a, &fd) < 0)
                return -EBADF;
            o->a = (unsigned long long)fd;
        } else if (o->kind == RC_OP_EXEC && o->b > 0) {
            if (map_fd((long long)o->b - 1, &fd) < 0)
                return -EBADF;
            o->b = (unsigned long long)fd + 1;
        }
    }
    p->ops = ops;
    const char **argv = calloc(h[H_ARGC] + 1, sizeof *argv);
    const char **envp = calloc(h[H_ENVC] + 1, sizeof *envp);
    if (!argv || !envp)
        return -ENOMEM;
    for (int i = 0; i <= h[H_ARGC]; i++, at += 8) {
        int64_t o;
        memcpy(&o, at, 8);
        STR(o, argv[i]);
    }
    for (int i = 0; i <= h[H_ENVC]; i++, at += 8) {
        int64_t o;
        memcpy(&o, at, 8);
        STR(o, envp[i]);
    }
    if (argv[h[H_ARGC]] || envp[h[H_ENVC]])
        return -EINVAL;
    p->argv = argv;
    p->envp = envp;
    STR(h[H_PATH_ENV], p->path_env);
    p->ngids = (int)h[H_NGIDS];
    unsigned int *gids = calloc(p->ngids + 1, sizeof *gids);
    if (!gids)
        return -ENOMEM;
    for (int i = 0; i < p->ngids; i++, at += 8) {
        int64_t g;
        memcpy(&g, at, 8);
        gids[i] = (unsigned int)g;
    }
    p->gids = gids;
    p->keep_fds = (int)h[H_KEEP_FDS];
    if (h[H_HAS_STDIO]) {
        for (int i = 0; i < 3; i++)
            if (map_fd(h[H_STDIO0 + i], &u->stdio[i]) < 0)
                return -EBADF;
        p->stdio = u->stdio;
    }
    p->share_memory = (int)h[H_SHARE_MEMORY];
#undef STR
    return 0;
}

/* ---- the channel ----------------------------------------------------------------------- */

static void die(const char *what)
{
    fprintf(stderr, "runner: the warm server's spawn helper: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int send_reply(int chan, const void *data, size_t len, int fd)
{
    struct iovec iov = { (void *)data, len };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } cm;
    struct msghdr mh = { 0 };
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (fd >= 0) {
        memset(&cm, 0, sizeof cm);
        mh.msg_control = cm.buf;
        mh.msg_controllen = sizeof cm.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t n;
    do n = sendmsg(chan, &mh, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

static void do_clone(int chan, char *buf, size_t n, int *fds, int nrecv)
{
    int32_t reply = -EINVAL;
    int sock = -1;
    uint32_t count;
    memcpy(&count, buf + 4, 4);
    if (count > MAX_FDS || count != (uint32_t)nrecv || n < 8 + 4 * (size_t)count)
        goto out;
    nfds = (int)count;
    for (int i = 0; i < nfds; i++) {
        int32_t w;
        memcpy(&w, buf + 8 + 4 * i, 4);
        worker_fd[i] = w;
        our_fd[i] = fds[i];
    }
    size_t head = 8 + 4 * (size_t)count;
    head = (head + 7) & ~(size_t)7;  /* the plan starts 8-aligned */
    struct unpacked u;
    if (n < head)
        goto out;
    reply = unpack(buf + head, n - head, &u);
    if (reply == 0) {
        reply = rc_spawn(&u.plan, &sock);  /* the pid, or -errno */
        /* (the plan's arrays are this process's until it exits: a shared-memory child has
         * exec'd by now, a forked one has its own copy) */
    }
out:
    send_reply(chan, &reply, sizeof reply, reply > 0 ? sock : -1);
    if (sock >= 0)
        close(sock);
    for (int i = 0; i < nrecv; i++)
        close(fds[i]);
    nfds = 0;
}

/* the server's final reply on CONN: exit (or die) as the launcher would */
__attribute__((noreturn)) static void finish(int conn)
{
    unsigned char reply[8];
    size_t got = 0;
    while (got < 8) {
        ssize_t r = read(conn, reply + got, 8 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += r;
    }
    int32_t value;
    memcpy(&value, reply + 4, 4);
    if (got == 8 && reply[0] == 'E')
        exit(value);
    if (got == 8 && reply[0] == 'S') {
        signal(value, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, value);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        kill(getpid(), value);
        exit(128 + value);
    }
    fprintf(stderr, "runner: the warm server went away during the call\n");
    exit(1);
}

/* wait for `pid` as waitpid(pid, options), forwarding signals meanwhile; a worker gone
 * (its end of chan closed) ends a blocking wait */
static void do_wait(int chan, const int32_t *req)
{
    pid_t pid = req[1];
    int options = req[2] & WNOHANG, status = 0;
    int32_t out[2] = { 0, 0 };
    if (req[3])
        attach(pid);
    pid_t r;
    if (options & WNOHANG) {
        r = waitpid(pid, &status, WNOHANG);
    } else {
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        for (;;) {
            if (pidfd >= 0) {
                struct pollfd p[2] = { { pidfd, POLLIN, 0 }, { chan, POLLRDHUP, 0 } };
                if (poll(p, 2, -1) < 0 && errno == EINTR)
                    continue;
                if (p[1].revents & (POLLHUP | POLLRDHUP | POLLERR))
                    finish(conn);  /* the worker died: the server's reply says how */
            }
            r = waitpid(pid, &status, pidfd >= 0 ? WNOHANG : 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r != 0)
                break;
        }
        if (pidfd >= 0)
            close(pidfd);
    }
    out[0] = r < 0 ? -errno : r;
    out[1] = status;
    send_reply(chan, out, sizeof out, -1);
}

int main(void)
{
    const char *fds = getenv("RUNNER_WARM_SPAWN");
    int chan = -1, flags = 0;
    if (!fds || sscanf(fds, "%d,%d,%d", &conn, &chan, &flags) != 3 || conn < 0 || chan < 0) {
        fprintf(stderr, "runner: warm-spawn is run by the launcher of a served create or run\n");
        return 2;
    }
    unsetenv("RUNNER_WARM_SPAWN");
    fcntl(conn, F_SETFD, FD_CLOEXEC);
    fcntl(chan, F_SETFD, FD_CLOEXEC);
    if (flags & 1) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
            sigaction(forwarded[i], &sa, NULL);
    }
    char *buf = malloc(MAX_PLAN);
    if (!buf)
        die("memory");
    for (;;) {
        int fds[MAX_FDS];
        struct iovec iov = { buf, MAX_PLAN };
        union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int) * MAX_FDS)]; } cm;
        struct msghdr mh = { 0 };
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cm.b;
        mh.msg_controllen = sizeof cm.b;
        ssize_t n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("reading from the worker");
        if (n == 0)
            break;  /* the worker is done with us */
        int nrecv = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < k && nrecv < MAX_FDS; i++)
                    memcpy(&fds[nrecv++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            }
        uint32_t kind = 0;
        if (n >= 4)
            memcpy(&kind, buf, 4);
        if (kind == 'C' && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && n >= 8) {
            do_clone(chan, buf, (size_t)n, fds, nrecv);
        } else if (kind == 'W' && n == 16 && nrecv == 0) {
            int32_t req[4];
            memcpy(req, buf, 16);
            do_wait(chan, req);
        } else {
            for (int i = 0; i < nrecv; i++)
                close(fds[i]);
            int32_t bad = -EINVAL;
            send_reply(chan, &bad, sizeof bad, -1);
        }
    }
    close(chan);
    finish(conn);
}
