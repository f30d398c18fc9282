/* A static probe copied into test rootfses: it attempts one thing from inside a container
 * and prints what happened, so that tests can assert on errno names, not shell wording.
 *
 *   secprobe sys NAME [ARG...]     raw syscall by name; prints "ok <ret>" or "err <ERRNO>"
 *   secprobe walk HOSTDEV HOSTINO   for cwd and every open fd: follow ".." to the top and
 *                                   print "ESCAPE <fd>" if the host's / (dev, ino) is met
 *   secprobe fds                    print "fd <n> <target>" for each fd in /proc/self/fd
 *   secprobe stat PATH              print "<dev> <ino>" of PATH (following links)
 *   secprobe readn PATH N           read up to N bytes of PATH; print "read <count>"
 *   secprobe write PATH DATA        open O_WRONLY and write; "ok" or "err <ERRNO>"
 *   secprobe keyring                session keyring serial ("ok <id>") or "err <ERRNO>"
 *   secprobe handle PATH            name_to_handle_at + open_by_handle_at on PATH
 *   secprobe keysearch DESC         look a "user" key up in the session keyring
 *   secprobe ids                    "<uid> <euid>"
 *   secprobe parent                 ptrace, /proc/PPID/exe and /proc/PPID/mem of our parent
 *   secprobe procmount              new user+mount+pid namespaces, mount a fresh proc
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ename(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EACCES: return "EACCES";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case ENOSPC: return "ENOSPC";
    case EBUSY: return "EBUSY";
    case ENOTDIR: return "ENOTDIR";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOKEY: return "ENOKEY";
    case EEXIST: return "EEXIST";
    case ESTALE: return "ESTALE";
    }
    static char buf[32];
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

static const struct { const char *name; long nr; } calls[] = {
    { "add_key", SYS_add_key }, { "keyctl", SYS_keyctl }, { "request_key", SYS_request_key },
    { "bpf", SYS_bpf }, { "kexec_load", SYS_kexec_load },
    { "open_by_handle_at", SYS_open_by_handle_at }, { "unshare", SYS_unshare },
    { "setns", SYS_setns }, { "ptrace", SYS_ptrace }, { "mount", SYS_mount },
    { "umount2", SYS_umount2 }, { "mkdir", SYS_mkdir }, { "getpid", SYS_getpid },
    { "kill", SYS_kill }, { "personality", SYS_personality }, { "reboot", SYS_reboot },
    { "init_module", SYS_init_module }, { "swapon", SYS_swapon }, { "chroot", SYS_chroot },
    { "userfaultfd", SYS_userfaultfd }, { "perf_event_open", SYS_perf_event_open },
    { "clock_settime", SYS_clock_settime }, { "mknod", SYS_mknod },
    { "clone3", SYS_clone3 }, { "openat2", SYS_openat2 }, { "faccessat2", SYS_faccessat2 },
};

static int cmd_sys(int argc, char **argv)
{
    long nr = -1, a[6] = { 0 };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
        if (!strcmp(calls[i].name, argv[2]))
            nr = calls[i].nr;
    if (nr < 0) {
        fprintf(stderr, "unknown syscall %s\n", argv[2]);
        return 2;
    }
    for (int i = 3; i < argc && i < 9; i++)
        a[i - 3] = argv[i][0] == '"' ? (long)(argv[i] + 1) : strtol(argv[i], NULL, 0);
    errno = 0;
    long rc = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (rc < 0)
        printf("err %s\n", ename(errno));
    else
        printf("ok %ld\n", rc);
    return 0;
}

static int walk_from(int start, dev_t hd, ino_t hi)
{
    int fd = dup(start);
    if (fd < 0)
        return 0;
    for (int depth = 0; depth < 256; depth++) {
        struct stat st;
        if (fstat(fd, &st) < 0)
            break;
        if (st.st_dev == hd && st.st_ino == hi) {
            close(fd);
            return 1;
        }
        int up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (up < 0)
            break;
        struct stat ust;
        if (fstat(up, &ust) == 0 && ust.st_dev == st.st_dev && ust.st_ino == st.st_ino) {
            close(up);
            break;  /* the top */
        }
        close(fd);
        fd = up;
    }
    close(fd);
    return 0;
}

static int cmd_walk(char **argv)
{
    dev_t hd = strtoull(argv[2], NULL, 0);
    ino_t hi = strtoull(argv[3], NULL, 0);
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd >= 0 && walk_from(cwd, hd, hi))
        printf("ESCAPE cwd\n");
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        n++;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && walk_from(fd, hd, hi))
            printf("ESCAPE fd %d\n", fd);
        /* a non-directory fd: its mount's root is reachable through /proc/self/fd/N/.. */
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d/..", fd);
        int up = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (up >= 0 && walk_from(up, hd, hi))
            printf("ESCAPE fd %d/..\n", fd);
        if (up >= 0)
            close(up);
    }
    printf("walked %d\n", n);
    return 0;
}

static int cmd_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int self = d ? dirfd(d) : -1;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        char p[300], t[4096] = "";
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(p, t, sizeof t - 1);
        if (n > 0)
            t[n] = 0;
        printf("fd %s %s\n", e->d_name, t);
    }
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2)
        return 2;
    const char *c = argv[1];
    if (!strcmp(c, "sys") && argc >= 3)
        return cmd_sys(argc, argv);
    if (!strcmp(c, "walk") && argc >= 4)
        return cmd_walk(argv);
    if (!strcmp(c, "fds"))
        return cmd_fds();
    if (!strcmp(c, "stat") && argc >= 3) {
        struct stat st;
        if (stat(argv[2], &st) < 0) {
            printf("err %s\n", ename(errno));
            return 0;
        }
        printf("%lu %lu\n", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
        return 0;
    }
    if (!strcmp(c, "readn") && argc >= 4) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) {
            printf("err %s\n", ename(errno));
            return 0;
        }
        long want = atol(argv[3]), got = 0;
        char buf[4096];
        while (got < want) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0) {
                printf("err %s\n", ename(errno));
                return 0;
            }
            if (n == 0)
                break;
            got += n;
        }
        printf("read %ld\n", got);
        return 0;
    }
    if (!strcmp(c, "write") && argc >= 4) {
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0 || write(fd, argv[3], strlen(argv[3])) < 0)
            printf("err %s\n", ename(errno));
        else
            printf("ok\n");
        return 0;
    }
    if (!strcmp(c, "keyring")) {
        long id = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
        if (id < 0)
            printf("err %s\n", ename(errno));
        else
            printf("ok %ld\n", id);
        return 0;
    }
    if (!strcmp(c, "handle") && argc >= 3) {
        struct { unsigned int bytes; int type; unsigned char h[128]; } fh = { 128, 0, { 0 } };
        int mount_id;
        if (syscall(SYS_name_to_handle_at, AT_FDCWD, argv[2], &fh, &mount_id, 0) < 0) {
            printf("err name_to_handle_at %s\n", ename(errno));
            return 0;
        }
        int root = open("/", O_RDONLY | O_DIRECTORY);
        long fd = syscall(SYS_open_by_handle_at, root, &fh, O_RDONLY);
        if (fd < 0)
            printf("err %s\n", ename(errno));
        else
            printf("ok %ld\n", fd);
        return 0;
    }
    if (!strcmp(c, "ids")) {
        printf("%d %d\n", (int)getuid(), (int)geteuid());
        return 0;
    }
    if (!strcmp(c, "keysearch") && argc >= 3) {
        long id = syscall(SYS_keyctl, 10 /* KEYCTL_SEARCH */, -3 /* session */, "user",
                          argv[2], 0);
        if (id < 0)
            printf("err %s\n", ename(errno));
        else
            printf("ok %ld\n", id);
        return 0;
    }
    if (!strcmp(c, "parent")) {
        /* the process that started us (the runtime, when we are the init without a pid
         * namespace): trace it, open its executable, read its memory */
        pid_t pp = getppid();
        char p[64];
        long rc = syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, pp, 0, 0);
        printf("ptrace %s\n", rc < 0 ? ename(errno) : "ok");
        snprintf(p, sizeof p, "/proc/%d/exe", (int)pp);
        int fd = open(p, O_PATH);
        printf("exe %s\n", fd < 0 ? ename(errno) : "ok");
        snprintf(p, sizeof p, "/proc/%d/mem", (int)pp);
        fd = open(p, O_RDONLY);
        printf("mem %s\n", fd < 0 ? ename(errno) : "ok");
        return 0;
    }
    if (!strcmp(c, "procmount")) {
        /* new user, mount and pid namespaces of our own, then a fresh procfs: the kernel
         * allows that only while a fully visible procfs is in the mount namespace */
        if (syscall(SYS_unshare, 0x10000000 | 0x00020000 | 0x20000000) < 0) {
            printf("unshare %s\n", ename(errno));
            return 0;
        }
        pid_t pid = fork();
        if (pid == 0) {
            int rc = syscall(SYS_mount, "proc", "/proc", "proc", 0, 0);
            printf("mount %s\n", rc < 0 ? ename(errno) : "ok");
            fflush(stdout);
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        return 0;
    }
    fprintf(stderr, "usage\n");
    return 2;
}
