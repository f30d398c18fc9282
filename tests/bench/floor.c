/* The floor of a container start on this host: the kernel's own cost of what a `/bin/true`
 * container with the default config asks for, with no runtime around it. Built by the bench
 * in a temp dir and run in a loop; it prints containers per second.
 *
 *   floor N ROOTFS [-p PREFIX] [-M] [-c DIR]... [-b HOSTDIR]...
 *
 * Each round: mkdir DIR/PREFIX-<i> (PREFIX: floor-<pid>) for every -c DIR (a v2 one is entered by clone3's
 * CLONE_INTO_CGROUP, v1 ones by the child writing "0" to their tasks file); clone3 with new
 * mount, uts, ipc, pid and network namespaces; with -M the child makes the default config's
 * mounts (proc, /dev tmpfs + devpts + shm + mqueue, read-only sysfs, a /sys/fs/cgroup tmpfs
 * with a read-only bind of every -b HOSTDIR, the device nodes and symlinks, pivot_root, the
 * masked and read-only paths, a read-only root) and sets the hostname; then it execs
 * /bin/true. The parent waits and removes the cgroups. No checks beyond failing loudly: this
 * is a measuring stick, not a runtime. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/sched.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#define MAXC 32
static const char *cg_parent[MAXC], *binds[MAXC];
static int ncg, nbinds, do_mounts;
static char prefix[256];
static char cg_dir[MAXC][512];

static void die(const char *what)
{
    perror(what);
    _exit(125);
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long fl, const char *data)
{
    if (mount(src, dst, type, fl, data) < 0)
        die(dst);
}

static void child_mounts(const char *rootfs)
{
    char p[1024];
    unsigned long nse = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    mnt(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL);
    mnt(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL);
    if (chdir(rootfs) < 0)
        die("chdir");
    mnt("proc", "proc", "proc", 0, NULL);
    mnt("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
    mkdir("dev/pts", 0755);
    mnt("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    mkdir("dev/shm", 0755);
    mnt("shm", "dev/shm", "tmpfs", nse, "mode=1777,size=65536k");
    mkdir("dev/mqueue", 0755);
    mnt("mqueue", "dev/mqueue", "mqueue", nse, NULL);
    mnt("sysfs", "sys", "sysfs", nse | MS_RDONLY, NULL);
    mnt("tmpfs", "sys/fs/cgroup", "tmpfs", nse | MS_RELATIME, "mode=755");
    for (int i = 0; i < nbinds; i++) {
        snprintf(p, sizeof p, "sys/fs/cgroup/%s", strrchr(binds[i], '/') + 1);
        mkdir(p, 0755);
        mnt(binds[i], p, NULL, MS_BIND | MS_REC | nse | MS_RDONLY, NULL);
        mnt(NULL, p, NULL, MS_REMOUNT | MS_BIND | nse | MS_RDONLY, NULL);
    }
    mnt(NULL, "sys/fs/cgroup", NULL, MS_REMOUNT | nse | MS_RDONLY | MS_RELATIME, NULL);
    static const char *nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
    static const int minor[] = { 3, 5, 7, 8, 9, 0 };
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "dev/%s", nodes[i]);
        if (mknod(p, S_IFCHR | 0666, makedev(i == 5 ? 5 : 1, minor[i])) < 0)
            die(p);
    }
    symlink("/proc/self/fd", "dev/fd");
    symlink("/proc/self/fd/0", "dev/stdin");
    symlink("/proc/self/fd/1", "dev/stdout");
    symlink("/proc/self/fd/2", "dev/stderr");
    symlink("pts/ptmx", "dev/ptmx");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        die("pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        die("umount");
    if (chdir("/") < 0)
        die("chdir /");
    static const char *masked[] = { "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap" };
    for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
        struct stat st;
        if (stat(masked[i], &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode))
            mnt("tmpfs", masked[i], "tmpfs", MS_RDONLY, "size=0");
        else
            mnt("/dev/null", masked[i], NULL, MS_BIND, NULL);
    }
    static const char *ro[] = { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger" };
    for (size_t i = 0; i < sizeof ro / sizeof *ro; i++) {
        if (access(ro[i], F_OK) < 0)
            continue;
        mnt(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL);
        mnt(NULL, ro[i], NULL, MS_REMOUNT | MS_BIND | MS_REC | nse | MS_RDONLY, NULL);
    }
    mnt(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
    if (sethostname("floor", 5) < 0)
        die("sethostname");
}

/* a new v1 cpuset is empty, and nothing can join it until it has cpus and mems */
static void cpuset_inherit(const char *parent, const char *dir)
{
    static const char *names[] = { "cpuset.cpus", "cpuset.mems" };
    for (int i = 0; i < 2; i++) {
        char f[600], buf[256];
        snprintf(f, sizeof f, "%s/%s", parent, names[i]);
        int fd = open(f, O_RDONLY);
        if (fd < 0)
            return;
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        snprintf(f, sizeof f, "%s/%s", dir, names[i]);
        fd = open(f, O_WRONLY);
        if (fd < 0 || n <= 0 || write(fd, buf, (size_t)n) < 0)
            die(f);
        close(fd);
    }
}

static void remove_cgroups(void)
{
    for (int i = 0; i < ncg; i++)
        if (cg_dir[i][0])
            rmdir(cg_dir[i]);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int n = atoi(argv[1]);
    const char *rootfs = argv[2];
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "-p") && i + 1 < argc)
            snprintf(prefix, sizeof prefix, "%s", argv[++i]);
        else if (!strcmp(argv[i], "-M"))
            do_mounts = 1;
        else if (!strcmp(argv[i], "-c") && i + 1 < argc && ncg < MAXC)
            cg_parent[ncg++] = argv[++i];
        else if (!strcmp(argv[i], "-b") && i + 1 < argc && nbinds < MAXC)
            binds[nbinds++] = argv[++i];
    }
    if (!prefix[0])
        snprintf(prefix, sizeof prefix, "floor-%d", (int)getpid());
    int devnull = open("/dev/null", O_RDWR);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int k = 0; k < n; k++) {
        int v2fd = -1;
        memset(cg_dir, 0, sizeof cg_dir);
        for (int i = 0; i < ncg; i++) {
            snprintf(cg_dir[i], sizeof cg_dir[i], "%s/%s-%d", cg_parent[i], prefix, k);
            if (mkdir(cg_dir[i], 0755) < 0) {
                cg_dir[i][0] = 0;
                remove_cgroups();
                die("mkdir");
            }
            char f[600];
            cpuset_inherit(cg_parent[i], cg_dir[i]);
            snprintf(f, sizeof f, "%s/cgroup.type", cg_dir[i]);
            if (access(f, F_OK) == 0) /* only cgroup2 has cgroup.type */
                v2fd = open(cg_dir[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        struct clone_args ca = { 0 };
        ca.flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET;
        ca.exit_signal = SIGCHLD;
        if (v2fd >= 0) {
            ca.flags |= CLONE_INTO_CGROUP;
            ca.cgroup = (uint64_t)v2fd;
        }
        pid_t pid = syscall(SYS_clone3, &ca, sizeof ca);
        if (pid < 0) {
            remove_cgroups();
            die("clone3");
        }
        if (pid == 0) {
            for (int i = 0; i < ncg; i++) {
                char f[600];
                snprintf(f, sizeof f, "%s/tasks", cg_dir[i]);
                int fd = open(f, O_WRONLY);
                if (fd >= 0) {
                    if (write(fd, "0", 1) < 0)
                        die(f);
                    close(fd);
                }
            }
            if (do_mounts)
                child_mounts(rootfs);
            else if (chroot(rootfs) < 0 || chdir("/") < 0)
                die("chroot");
            dup2(devnull, 0);
            dup2(devnull, 1);
            execl("/bin/true", "true", (char *)NULL);
            die("exec");
        }
        int status;
        if (waitpid(pid, &status, 0) < 0 || status != 0) {
            remove_cgroups();
            fprintf(stderr, "floor: child status %d\n", status);
            return 1;
        }
        if (v2fd >= 0)
            close(v2fd);
        for (int i = 0; i < ncg; i++)
            if (rmdir(cg_dir[i]) < 0)
                die("rmdir");
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%.1f\n", n / s);
    return 0;
}
