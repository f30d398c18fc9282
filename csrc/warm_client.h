/* The launcher's side of the warm server (runner/warm.py, spec/PERFORMANCE.md): hand the
 * call to a `runner warm-server` of the same state root, if one is there, and exit with its
 * status; else return, and the plain path (the interpreter) runs. Included by launcher.c,
 * which has the syscalls.
 *
 * The verbs that make no process are served whole by the server's worker. `create` and
 * `run` too, but their init must be this process's child (an engine's subreaper, containerd's
 * shim or conmon, must see it exit; a foreground run waits for it): when the worker comes to
 * the clone it replies 'P' with the path of warm-spawn (csrc/warm_spawn.c) and, over
 * SCM_RIGHTS, a channel; this process execs it, and it clones the plan the worker sends
 * and waits for what the worker asks (runner/warm_spawn.py). A detached `exec` is never
 * served. Any doubt — an option this does not know, a state root it cannot name, the
 * server's uid not ours, a refusal, no reply at all before the server took the call — and
 * the plain path runs: the server is only ever a shortcut.
 *
 * The request: a 16-byte header ("RWM2": a launcher that knows 'P'; "RWM1" was one before
 * it, whose create/run the server leaves to the plain path; argc, envc, length), then argv's and envp's
 * strings as the kernel laid them out (contiguous, NUL-terminated), with stdin, stdout,
 * stderr and an O_PATH fd of the working directory over SCM_RIGHTS. Replies are 8 bytes:
 * 'A' (accepted: the work begins), then 'E' status or 'S' signal, or 'P' (byte 1: forward
 * signals; value: the length of the path that follows); 'R' is a refusal. */

#define AF_UNIX_ 1
#define SOCK_STREAM_ 1
#define SOCK_CLOEXEC_ 02000000
#define SOL_SOCKET_ 1
#define SO_PEERCRED_ 17
#define SCM_RIGHTS_ 1
#define MSG_NOSIGNAL_ 0x4000
#define O_PATH_ 010000000
#define O_DIRECTORY_ 0200000
#define O_CLOEXEC_ 02000000
#define EINTR_ 4

struct iovec_ { void *base; unsigned long len; };
struct msghdr_ {
    void *name; unsigned int namelen; struct iovec_ *iov; unsigned long iovlen;
    void *control; unsigned long controllen; int flags;
};
struct cmsg4_ { unsigned long len; int level, type; int fds[4]; };
struct cmsg1_ { unsigned long len; int level, type; int fd, pad; };
struct ucred_ { int pid; unsigned int uid, gid; };
struct sockaddr_un_ { unsigned short family; char path[108]; };

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static int starts(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

/* the verbs runner/warm.py serves: keep the two lists the same */
static int served(const char *verb)
{
    static const char *const verbs[] = {"start", "state", "kill", "delete", "list", "ps",
                                        "pause", "resume", "update", "features", "spec",
                                        "create", "run", 0};
    for (int i = 0; verbs[i]; i++)
        if (same(verb, verbs[i]))
            return 1;
    return 0;
}

/* The socket of the state root this call names: --root, else the default that
 * libcontainer/state.py picks, where the launcher can tell it without guessing; as a
 * directory and the rest of the path. 0 when it is not a call to hand over. */
static const char *call_root(long argc, char **argv, char **envp, const char **tail)
{
    const char *root = 0, *xdg = 0;
    long i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-')
            break;
        if (same(a, "--root")) {
            if (++i >= argc)
                return 0;
            root = argv[i];
        } else if (starts(a, "--root=")) {
            root = a + 7;
        } else if (same(a, "--log") || same(a, "--log-format") || same(a, "--rootless")) {
            i++;
        } else if (!(starts(a, "--log=") || starts(a, "--log-format=") ||
                     starts(a, "--rootless=") || same(a, "--debug") ||
                     starts(a, "--debug=") || same(a, "--systemd-cgroup") ||
                     starts(a, "--systemd-cgroup="))) {
            return 0;  /* --help, --version, or what runner.cli will reject */
        }
    }
    if (i >= argc || !served(argv[i]))
        return 0;
    *tail = "/.warm.sock";
    if (root)
        return root[0] ? root : 0;
    for (char **e = envp; *e; e++)
        if (starts(*e, "XDG_RUNTIME_DIR="))
            xdg = *e + 16;
    /* root in a user namespace with XDG_RUNTIME_DIR set: only the plain path can tell */
    if (sys3(NR_geteuid, 0, 0, 0) == 0)
        return xdg && xdg[0] ? 0 : "/run/runner";
    *tail = "/runner/.warm.sock";
    return xdg && xdg[0] == '/' ? xdg : 0;
}

static char *decimal(char *end, long n)
{
    *--end = 0;
    do
        *--end = (char)('0' + n % 10);
    while ((n /= 10) > 0);
    return end;
}

/* The worker has come to a create's clone: become warm-spawn (the path that follows the
 * 'P' reply), with this connection (its final reply is still to come) and the channel,
 * named in RUNNER_WARM_SPAWN=CONN,CHAN,FLAGS; its argv is this one's, so that `ps` shows the
 * command as it was called for as long as a foreground run lasts. */
__attribute__((noreturn)) static void spawn_helper(long conn, long chan, const char *flags,
                                                   long n, char **argv, char **envp)
{
    char path[4096], var[64] = "RUNNER_WARM_SPAWN=", a[24], b[24];
    long got = 0, r, envc = 0, i = 0;
    while (got < n) {
        r = sys3(NR_read, conn, path + got, n - got);
        if (r == -EINTR_)
            continue;
        if (r <= 0)
            break;
        got += r;
    }
    path[got] = 0;
    const char *parts[] = {decimal(a + sizeof a, conn), ",", decimal(b + sizeof b, chan), ",",
                           flags, 0};
    char *v = var + len(var);
    for (const char *const *p = parts; *p; p++)
        for (const char *c = *p; *c; c++)
            *v++ = *c;
    *v = 0;
    while (envp[envc])
        envc++;
    char *env[envc + 2];
    for (; i < envc; i++)
        env[i] = envp[i];
    env[i++] = var;
    env[i] = 0;
    if (got == n && sys3(NR_fcntl, conn, 2 /* F_SETFD */, 0) == 0)
        sys3(NR_execve, path, argv, env);
    say(COMMAND ": cannot run the warm server's spawn helper ");
    say(path);
    say("\n");
    sys3(NR_exit_group, 1, 0, 0);
    for (;;)
        ;
}

static void warm(long argc, char **argv, char **envp)
{
    const char *tail = 0, *root;
    char **e;
    for (e = envp; *e; e++)
        if (starts(*e, "RUNNER_WARM=") && same(*e + 12, "0"))
            return;
    if (argc < 2 || !same(COMMAND, "runner") || !(root = call_root(argc, argv, envp, &tail)))
        return;
    struct sockaddr_un_ addr;
    unsigned long rl = len(root), tl = len(tail), i, n = 0;
    /* a path too long for sun_path: the plain path */
    if (rl + tl >= sizeof addr.path)
        return;
    addr.family = AF_UNIX_;
    for (i = 0; i < rl; i++)
        addr.path[n++] = root[i];
    for (i = 0; i <= tl; i++)
        addr.path[n++] = tail[i];

    /* argv's and envp's strings, as one block: the kernel lays them out one after the
     * other; anything else (a libc that moved them) is the plain path */
    long envc = 0;
    char *end = argv[0];
    for (i = 0; i < (unsigned long)argc; i++) {
        if (argv[i] != end)
            return;
        end += len(argv[i]) + 1;
    }
    for (e = envp; *e; e++, envc++) {
        if (*e != end)
            return;
        end += len(*e) + 1;
    }

    long fd = sys3(NR_socket, AF_UNIX_, SOCK_STREAM_ | SOCK_CLOEXEC_, 0);
    if (fd < 0)
        return;
    /* the lowest free fd: 0, 1 or 2 when one of them is closed, which the plain path
     * must see closed (handed over, it would be this socket) */
    if (fd <= 2)
        goto plain;
    struct ucred_ cred;
    unsigned int credlen = sizeof cred;
    long cwd = -1;
    if (sys3(NR_connect, fd, &addr, sizeof addr) < 0 ||
        sys5(NR_getsockopt, fd, SOL_SOCKET_, SO_PEERCRED_, (long)&cred, (long)&credlen) < 0 ||
        cred.uid != (unsigned int)sys3(NR_geteuid, 0, 0, 0))
        goto plain;  /* no server, or not ours: never hand it our fds */
    cwd = sys4(NR_openat, AT_FDCWD_, ".", O_PATH_ | O_DIRECTORY_ | O_CLOEXEC_, 0);
    if (cwd < 0)
        goto plain;

    unsigned int head[4] = {0x324d5752 /* "RWM2" */, (unsigned int)argc, (unsigned int)envc,
                            (unsigned int)(end - argv[0])};
    struct iovec_ iov[2] = {{head, sizeof head}, {argv[0], (unsigned long)(end - argv[0])}};
    struct cmsg4_ cm = {sizeof cm, SOL_SOCKET_, SCM_RIGHTS_, {0, 1, 2, (int)cwd}};
    struct msghdr_ msg = {0, 0, iov, 2, &cm, sizeof cm, 0};
    long sent = sys3(NR_sendmsg, fd, &msg, MSG_NOSIGNAL_);
    sys3(NR_close, cwd, 0, 0);
    /* a closed stdio fd (EBADF), or a short send: the plain path, whose own error it is */
    if (sent != (long)(sizeof head + (end - argv[0])))
        goto plain;

    int accepted = 0;
    for (;;) {
        unsigned char reply[8];
        long got = 0, r;
        int passed = -1;
        while (got < 8) {
            struct iovec_ riov = {reply + got, (unsigned long)(8 - got)};
            struct cmsg1_ rcm = {0, 0, 0, -1, 0};
            struct msghdr_ rmsg = {0, 0, &riov, 1, &rcm, sizeof rcm, 0};
            r = sys3(NR_recvmsg, fd, &rmsg, 0);
            if (r == -EINTR_)
                continue;
            if (r <= 0)
                break;
            if (rmsg.controllen >= 20 && rcm.level == SOL_SOCKET_ && rcm.type == SCM_RIGHTS_)
                passed = rcm.fd;
            got += r;
        }
        if (got < 8) {
            if (!accepted)
                goto plain;  /* gone before it took the call (exiting idle): nothing done */
            say(COMMAND ": the warm server went away during the call\n");
            sys3(NR_exit_group, 1, 0, 0);
        }
        int value = reply[4] | reply[5] << 8 | reply[6] << 16 | reply[7] << 24;
        if (reply[0] == 'A' && !accepted) {
            accepted = 1;
        } else if (reply[0] == 'E' && accepted) {
            sys3(NR_exit_group, value, 0, 0);
        } else if (reply[0] == 'S' && accepted) {
            /* the plain path's interpreter would have died of it */
            sys3(NR_kill, sys3(NR_getpid, 0, 0, 0), value, 0);
            sys3(NR_exit_group, 128 + value, 0, 0);
        } else if (reply[0] == 'P' && accepted && passed >= 0 && value > 0 && value < 4096) {
            spawn_helper(fd, passed, reply[1] ? "1" : "0", value, argv, envp);
        } else if (!accepted) {
            goto plain;  /* 'R': refused (another namespace, cgroup it cannot join, ...) */
        } else {
            say(COMMAND ": unexpected reply from the warm server\n");
            sys3(NR_exit_group, 1, 0, 0);
        }
    }
plain:
    sys3(NR_close, fd, 0, 0);
}
