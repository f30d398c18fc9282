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
 * argv: [sync fd, op index, "P" (search PATH) or "-", PATH, argv0, argv1, ...]. It execs
 * argv0 (searching PATH like the shim does); on failure it reports
 * struct rc_msg {MSG_ERROR, op, errno, 0} on the sync socket and exits 1. Started any
 * other way (the container exec'ing /proc/self/exe) it exits 127 at once. */
#if defined(__x86_64__)
#define NR_write 1
#define NR_close 3
#define NR_fcntl 72
#define NR_execve 59
#define NR_exit_group 231
static long sys3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
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
static long sys3(long n, long a, long b, long c)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n mov x0, sp\n bl tramp_main\n");
#else
#error "no exec trampoline for this architecture"
#endif

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

__attribute__((noreturn, used)) void tramp_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc < 5 || argv[0][0] < '0' || argv[0][0] > '9')
        sys3(NR_exit_group, 127, 0, 0);  /* run as anything but the shim's trampoline */
    int sync = num(argv[0]);
    int msg[4] = { 3, num(argv[1]), 2, 0 };  /* MSG_ERROR, op, ENOENT */
    char **args = argv + 4;
    const char *file = args[0];
    long err;

    if (sys3(NR_fcntl, sync, 2 /* F_SETFD */, 1 /* FD_CLOEXEC */) < 0) {
        /* (a seccomp filter refusing fcntl) never let the sync socket into the container */
        sys3(NR_close, sync, 0, 0);
        sync = -1;
    }
    if (has_slash(file) || argv[2][0] != 'P') {
        err = -try_exec(file, args, envp);
    } else {
        /* like execvp: each PATH entry in turn; remember the last error but ENOENT */
        char buf[4096];
        const char *p = argv[3];
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
