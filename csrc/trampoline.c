/* The exec trampoline: a tiny static program, without libc, that the shim's child runs
 * (from a sealed memfd, with execveat) right before the container's process.
 *
 * Why: the child is a fork of the runner's Python interpreter, so until its last execve
 * /proc/self/exe is the host's python binary. A container whose entrypoint resolves to
 * /proc/self/exe (a symlink, a `#!/proc/self/exe` script) would get that host binary
 * executed inside it, with a handle on it to overwrite later (CVE-2019-5736). Going
 * through this trampoline first makes /proc/self/exe a sealed, anonymous copy of these
 * few hundred bytes: there is nothing of the host left to reach.
 *
 * argv: [sync fd, op index, mode, PATH, argv0, argv1, ...]; mode "P" (search PATH) or "-",
 * then "I<status fd + 1>" for the init (below). It execs argv0 (searching PATH like the
 * shim does); on failure it reports struct rc_msg {MSG_ERROR, op, errno, 0} on the sync
 * socket and exits 1. Started any other way (the container exec'ing /proc/self/exe) it
 * exits 127 at once.
 *
 * The init (mode "PI..."), like tini or docker-init, for a command that must not be pid 1
 * of its pid namespace: the kernel spares that pid every signal it has no handler for,
 * so a command's own abort(), raise() or kill(0, ...) would not end it, and orphans
 * reparented to it would stay zombies. The init forks the command (in a process group
 * of its own, the terminal's foreground one if there is one), reaps every process that
 * ends, passes each signal it gets on to the command, and when the command ends exits
 * with its status: its exit code, or 128 + the signal that killed it (no signal can
 * kill a namespace's init from inside). With a status fd it first writes the raw wait
 * status there (4 bytes), so that the runtime's parent can report the signal itself. */
#if defined(__x86_64__)
#define NR_write 1
#define NR_close 3
#define NR_fcntl 72
#define NR_execve 59
#define NR_exit_group 231
#define NR_rt_sigprocmask 14
#define NR_rt_sigtimedwait 128
#define NR_clone 56
#define NR_wait4 61
#define NR_kill 62
#define NR_getpid 39
#define NR_setpgid 109
#define NR_ioctl 16
#define NR_prctl 157
static long sys4(long n, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n"
        " call tramp_main\n hlt\n");
#elif defined(__aarch64__)
#define NR_write 64
#define NR_close 57
#define NR_fcntl 25
#define NR_execve 221
#define NR_exit_group 94
#define NR_rt_sigprocmask 135
#define NR_rt_sigtimedwait 137
#define NR_clone 220
#define NR_wait4 260
#define NR_kill 129
#define NR_getpid 172
#define NR_setpgid 154
#define NR_ioctl 29
#define NR_prctl 167
static long sys4(long n, long a, long b, long c, long d)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n mov x0, sp\n bl tramp_main\n");
#else
#error "no exec trampoline for this architecture"
#endif
#define sys3(n, a, b, c) sys4(n, a, b, c, 0)

static int num(const char *s)
{
    int n = 0;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (*s++ - '0');
    return n;
}

static int has_slash(const char *s)
{
    for (; *s; s++)
        if (*s == '/')
            return 1;
    return 0;
}

static long try_exec(const char *file, char **argv, char **envp)
{
    return sys3(NR_execve, (long)file, (long)argv, (long)envp);
}

/* exec args[0] (through PATH when `search`); on failure tell the shim's parent and exit 1 */
__attribute__((noreturn)) static void exec_or_report(int sync, int op, int search,
                                                     const char *path, char **args,
                                                     char **envp)
{
    int msg[4] = { 3, op, 2, 0 };  /* MSG_ERROR, op, ENOENT */
    const char *file = args[0];
    long err;

    if (sync >= 0 && sys3(NR_fcntl, sync, 2 /* F_SETFD */, 1 /* FD_CLOEXEC */) < 0) {
        /* (a seccomp filter refusing fcntl) never let the sync socket into the container */
        sys3(NR_close, sync, 0, 0);
        sync = -1;
    }
    if (has_slash(file) || !search) {
        err = -try_exec(file, args, envp);
    } else {
        /* like execvp: each PATH entry in turn; remember the last error but ENOENT */
        char buf[4096];
        const char *p = path;
        err = 2;
        for (;;) {
            const char *end = p;
            while (*end && *end != ':')
                end++;
            unsigned long dl = end - p, fl = 0, i;
            while (file[fl])
                fl++;
            const char *dir = p;
            if (dl == 0) {
                dir = ".";
                dl = 1;
            }
            if (dl + 1 + fl < sizeof buf) {
                for (i = 0; i < dl; i++)
                    buf[i] = dir[i];
                buf[dl] = '/';
                for (i = 0; i <= fl; i++)
                    buf[dl + 1 + i] = file[i];
                long e = -try_exec(buf, args, envp);
                if (e != 2 && e != 20)  /* ENOENT, ENOTDIR */
                    err = e;
            }
            if (!*end)
                break;
            p = end + 1;
        }
    }
    msg[2] = (int)err;
    if (sync >= 0)
        sys3(NR_write, sync, (long)msg, sizeof msg);
    sys3(NR_exit_group, 1, 0, 0);
    for (;;)
        ;
}

#define SIGCHLD_ 17
#define WNOHANG_ 1

/* The init (see the top of the file). */
__attribute__((noreturn)) static void init_main(int sync, int op, int search, const char *path,
                                                char **args, char **envp, int status_fd)
{
    unsigned long all = ~0UL, old = 0;
    int msg[4] = { 3, op, 0, 0 };  /* MSG_ERROR */
    /* every signal waits for sigtimedwait below: none has its default action on us */
    sys4(NR_rt_sigprocmask, 2 /* SIG_SETMASK */, (long)&all, (long)&old, 8);
    if (status_fd >= 0)
        sys3(NR_fcntl, status_fd, 2 /* F_SETFD */, 1 /* FD_CLOEXEC */);
    /* the command (same uid) must not ptrace its init */
    sys3(NR_prctl, 4 /* PR_SET_DUMPABLE */, 0, 0);
    if (sys3(NR_getpid, 0, 0, 0) != 1)  /* no pid namespace: orphans come to us anyway */
        sys3(NR_prctl, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0);
    long child = sys4(NR_clone, SIGCHLD_, 0, 0, 0);
    if (child == 0) {
        long me = sys3(NR_getpid, 0, 0, 0);
        int pgrp = (int)me;
        sys3(NR_setpgid, 0, 0, 0);
        /* with SIGTTOU still blocked the change is allowed; not a tty: ENOTTY, ignored */
        sys3(NR_ioctl, 0, 0x5410 /* TIOCSPGRP */, (long)&pgrp);
        sys4(NR_rt_sigprocmask, 2, (long)&old, 0, 8);
        exec_or_report(sync, op, search, path, args, envp);
    }
    if (child < 0) {
        msg[2] = (int)-child;
        sys3(NR_write, sync, (long)msg, sizeof msg);
        sys3(NR_exit_group, 1, 0, 0);
    }
    /* the sync socket closes once the command has exec'd (or it reports why not) */
    sys3(NR_close, sync, 0, 0);
    int status = 0, done = 0;
    long info[16];  /* siginfo_t: 128 bytes */
    int forwarding = 1;
    while (!done) {
        long sig = SIGCHLD_;
        if (forwarding) {
            sig = sys4(NR_rt_sigtimedwait, (long)&all, (long)info, 0, 8);
            if (sig == -4 /* EINTR */ || sig == -11 /* EAGAIN */ || sig == 0)
                continue;
            if (sig < 0)  /* refused (a seccomp profile): only wait, never spin */
                forwarding = 0;
        }
        if (forwarding && sig != SIGCHLD_) {
            sys3(NR_kill, child, sig, 0);
            continue;
        }
        for (;;) {
            int st = 0;
            long pid = sys4(NR_wait4, -1, (long)&st, forwarding ? WNOHANG_ : 0, 0);
            if (pid == -4)
                continue;
            if (pid == -10 /* ECHILD: cannot be, the command is ours */) {
                if (!done)
                    status = 1 << 8;
                done = 1;
                break;
            }
            if (pid <= 0)
                break;
            if (pid == child) {
                status = st;
                done = 1;
                if (!forwarding)
                    break;
            }
        }
    }
    int termsig = status & 0x7f;
    if (termsig == 0)
        sys3(NR_exit_group, (status >> 8) & 0xff, 0, 0);
    if (status_fd >= 0)
        sys3(NR_write, status_fd, (long)&status, sizeof status);
    sys3(NR_exit_group, 128 + termsig, 0, 0);
    for (;;)
        ;
}

__attribute__((noreturn, used)) void tramp_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc < 5 || argv[0][0] < '0' || argv[0][0] > '9')
        sys3(NR_exit_group, 127, 0, 0);  /* run as anything but the shim's trampoline */
    const char *mode = argv[2];
    int search = mode[0] == 'P';
    if (mode[0] && mode[1] == 'I')
        init_main(num(argv[0]), num(argv[1]), search, argv[3], argv + 4, envp,
                  num(mode + 2) - 1);
    exec_or_report(num(argv[0]), num(argv[1]), search, argv[3], argv + 4, envp);
}
