/* The installed `runner` and `runner-cni` commands: a launcher that starts the Python next
 * to it as `python -I -S -c <stub> <its own path> ARGS...`, where the stub runs the text of
 * bin/boot.py that this file carries. setup.py (build_scripts) builds it once per command,
 * with -DCOMMAND='"runner"' and -I to a directory holding the boot.h it writes from
 * bin/boot.py (`#define BOOT "..."`).
 *
 * Why a program: pip rewrites only a `#!python` shebang and drops any flags on it, and
 * `site` alone costs 3-6 ms of every container start, so the command itself must choose the
 * interpreter's flags. Why without libc (on x86_64 and aarch64; with libc elsewhere): what
 * each way of doing it adds to exec'ing the interpreter directly (measured with /bin/true as
 * the interpreter, medians of 1000 round-robin runs): this 0.13 ms, the same with static
 * glibc 0.58, dynamic glibc 0.73, the `#!/bin/sh` line it replaces 0.87.
 *
 * Why the text is read back from this file by a stub, not passed whole with -c: the
 * interpreter's command line is what `ps` shows of a `runner run` for as long as its
 * container lives, and 3 KB of Python in front of the arguments would hide them. The text
 * is in this file rather than in one beside it so that this one file is the whole command:
 * a copy or a symlink of it anywhere works, as the shell script did (it has to be readable,
 * as a script has to be).
 *
 * The interpreter: bin/python3 (else bin/python) of the directory this file really is in,
 * found through /proc/self/exe, so that a symlink to it (/usr/local/bin/runner) leads to the
 * venv. That python3 is itself a symlink and is run by its own path, not resolved: Python
 * finds its venv from argv[0]. Else the interpreter of the installation it was built for
 * (INSTALLED_PYTHON, the one pip ran the build with: setup.py), so that a copy of this file
 * (cp .venv/bin/runner-cni /opt/cni/bin/, how CNI plugins are installed) still finds its
 * packages; boot.py goes on to that one too when the python next to a copy lacks them.
 * Else python3 on PATH. When none can be executed: a message and exit status 127, what a
 * shell returns for a command it cannot run (the `#!/bin/sh` launcher's `exec python3` did
 * the same). */
#include "boot.h"

#ifndef COMMAND
#error "build with -DCOMMAND='\"runner\"'"
#endif
#ifndef INSTALLED_PYTHON  /* boot.h of an older setup.py */
#define INSTALLED_PYTHON ""
#define INSTALLED_PYTHON_REPR "''"
#endif

#define AT_FDCWD_ -100
#define AT_EXECFN_ 31
#define ENOENT_ 2
#define ENOTDIR_ 20

#if defined(__x86_64__) && !defined(WITH_LIBC)
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_fcntl 72
#define NR_getpid 39
#define NR_socket 41
#define NR_connect 42
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_getsockopt 55
#define NR_execve 59
#define NR_kill 62
#define NR_geteuid 107
#define NR_exit_group 231
#define NR_openat 257
#define NR_readlinkat 267
static long sys5(long n, long a, long b, long c, long d, long e)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n"
        " call launch\n hlt\n");
#elif defined(__aarch64__) && !defined(WITH_LIBC)
#define NR_read 63
#define NR_write 64
#define NR_close 57
#define NR_fcntl 25
#define NR_getpid 172
#define NR_socket 198
#define NR_connect 203
#define NR_sendmsg 211
#define NR_recvmsg 212
#define NR_getsockopt 209
#define NR_execve 221
#define NR_kill 129
#define NR_geteuid 175
#define NR_exit_group 94
#define NR_openat 56
#define NR_readlinkat 78
static long sys5(long n, long a, long b, long c, long d, long e)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4)
                     : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n mov x0, sp\n bl launch\n");
#else
/* elsewhere libc's syscall(2), its errors turned into the kernel's -errno */
#define WITH_LIBC 1
#include <errno.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>
#define NR_read SYS_read
#define NR_write SYS_write
#define NR_close SYS_close
#define NR_fcntl SYS_fcntl
#define NR_getpid SYS_getpid
#define NR_socket SYS_socket
#define NR_connect SYS_connect
#define NR_sendmsg SYS_sendmsg
#define NR_recvmsg SYS_recvmsg
#define NR_getsockopt SYS_getsockopt
#define NR_execve SYS_execve
#define NR_kill SYS_kill
#define NR_geteuid SYS_geteuid
#define NR_exit_group SYS_exit_group
#define NR_openat SYS_openat
#define NR_readlinkat SYS_readlinkat
static long sys5(long n, long a, long b, long c, long d, long e)
{
    long r = syscall(n, a, b, c, d, e);
    return r < 0 ? -errno : r;
}
#endif

#define sys4(n, a, b, c, d) sys5(n, (long)(a), (long)(b), (long)(c), (long)(d), 0)
#define sys3(n, a, b, c) sys5(n, (long)(a), (long)(b), (long)(c), 0, 0)

/* The marker's newline is a real one here and an escape in the stub, so only the text's
 * own copy matches; the text ends at its NUL. sys.argv[1] is this file (args[5] below). */
__attribute__((used)) static const char text[] = "#!boot\nCOMMAND = '" COMMAND "'; "
                                                 "INSTALLED_PYTHON = " INSTALLED_PYTHON_REPR "\n" BOOT;
static char stub[] = "exec(open(__import__('sys').argv[1],'rb').read()"
                     ".split(b'#!boot\\n')[1].split(b'\\0')[0])";

static unsigned long len(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

/* dir + "/" + name into buf (of 4096); 0 when it does not fit */
static int join(char *buf, const char *dir, unsigned long dl, const char *name)
{
    unsigned long nl = len(name), i;
    if (dl + 1 + nl >= 4096)
        return 0;
    for (i = 0; i < dl; i++)
        buf[i] = dir[i];
    buf[dl] = '/';
    for (i = 0; i <= nl; i++)
        buf[dl + 1 + i] = name[i];
    return 1;
}

static void say(const char *s)
{
    sys3(NR_write, 2, s, len(s));
}

#include "warm_client.h"

/* `self`: what a script gets as argv[0], the path this was executed by (a symlink's) */
__attribute__((noreturn)) static void run(long argc, char **argv, char **envp, char *self)
{
    char *path = 0, **e;
    for (e = envp; *e; e++)
        if (e[0][0] == 'P' && e[0][1] == 'A' && e[0][2] == 'T' && e[0][3] == 'H' && e[0][4] == '=')
            path = *e + 5;
    if (!self || !*self)
        self = argc > 0 && argv[0] ? argv[0] : COMMAND;
    warm(argc, argv, envp);  /* returns when the call is not served warm */

    char *args[argc + 7], dir[4096], py[4096];
    args[1] = "-I";
    args[2] = "-S";
    args[3] = "-c";
    args[4] = stub;
    args[5] = self;
    long i, n = 5;
    for (i = 1; i < argc; i++)
        args[++n] = argv[i];
    args[n + 1] = 0;
    args[0] = py;

    long err = ENOENT_, r;
    long dl = sys4(NR_readlinkat, AT_FDCWD_, (long)"/proc/self/exe", (long)dir, sizeof dir);
    if (dl <= 0 || dl >= (long)sizeof dir) {  /* no /proc: the path we were run by */
        for (dl = 0; self[dl] && dl < (long)sizeof dir - 1; dl++)
            dir[dl] = self[dl];
    }
    while (dl > 0 && dir[dl - 1] != '/')
        dl--;
    static char *const names[] = {"python3", "python"};
    for (i = 0; dl > 0 && i < 2; i++) {
        if (join(py, dir, dl - 1, names[i])) {
            r = -sys3(NR_execve, py, args, envp);
            if (r != ENOENT_ && r != ENOTDIR_)
                err = r;
        }
    }
    /* the installation's own, for a copy of this file elsewhere (/opt/cni/bin) */
    if (INSTALLED_PYTHON[0] && len(INSTALLED_PYTHON) < sizeof py) {
        for (i = 0; (py[i] = INSTALLED_PYTHON[i]); i++)
            ;
        r = -sys3(NR_execve, py, args, envp);
        if (r != ENOENT_ && r != ENOTDIR_)
            err = r;
    }
    /* python3 on PATH, as execvp would find it (no PATH: its default) */
    const char *p = path ? path : "/bin:/usr/bin";
    for (;;) {
        const char *end = p;
        while (*end && *end != ':')
            end++;
        if (end == p ? join(py, ".", 1, "python3") : join(py, p, end - p, "python3")) {
            r = -sys3(NR_execve, py, args, envp);
            if (r != ENOENT_ && r != ENOTDIR_)
                err = r;
        }
        if (!*end)
            break;
        p = end + 1;
    }
    say(COMMAND ": cannot run a Python interpreter (python3 or python next to ");
    say(self);
    if (INSTALLED_PYTHON[0]) {
        say(", ");
        say(INSTALLED_PYTHON);
    }
    say(", python3 on PATH): ");
    if (err == ENOENT_) {
        say("none found\n");
    } else {
        char num[24], *d = num + sizeof num - 1;
        *d = 0;
        do
            *--d = (char)('0' + err % 10);
        while ((err /= 10) > 0);
        say("errno ");
        say(d);
        say("\n");
    }
    sys3(NR_exit_group, 127, 0, 0);
    for (;;)
        ;
}

#ifdef WITH_LIBC
int main(int argc, char **argv, char **envp)
{
    run(argc, argv, envp, (char *)getauxval(AT_EXECFN));
}
#else
__attribute__((noreturn, used)) void launch(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1), **envp = argv + argc + 1, **e = envp, *self = 0;
    while (*e)
        e++;
    for (long *aux = (long *)(e + 1); aux[0]; aux += 2)
        if (aux[0] == AT_EXECFN_)
            self = (char *)aux[1];
    run(argc, argv, envp, self);
}
#endif
