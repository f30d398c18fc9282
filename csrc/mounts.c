/* The container's mounts: each op's mount (tmpcopyup, binds, propagation), masked and
 * read-only paths, files written, hiding the host's /proc and /sys, pivot_root. */
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

/* ---- tmpcopyup: a tmpfs that starts with what the directory it covers held ----------- */

struct rc_dirent64 { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; };

static int copy_file(int src, int dst, const char *name, mode_t mode)
{
    int in = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    int rc = out < 0 ? -1 : 0;
    char buf[8192];
    while (rc == 0) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -1 : 0;
            break;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -1;
                break;
            }
            done += w;
        }
    }
    int e = errno;
    close(in);
    if (out >= 0)
        close(out);
    errno = e;
    return rc;
}

static int copy_symlink(int src, int dst, const char *name)
{
    char target[4096];
    ssize_t len = readlinkat(src, name, target, sizeof target - 1);
    if (len < 0)
        return -1;
    target[len] = 0;
    return symlinkat(target, dst, name);
}

/* Copy the entries of directory `src` into `dst`, recursively, keeping modes, owners,
 * symlinks (not followed) and special files. No heap: getdents64 into the stack. */
static int copy_tree(int src, int dst, int depth)
{
    char buf[2048];
    if (depth > 64) {
        errno = ELOOP;
        return -1;
    }
    for (;;) {
        long n = syscall(SYS_getdents64, src, buf, sizeof buf);
        if (n <= 0)
            return (int)n;
        for (long off = 0; off < n;) {
            struct rc_dirent64 *de = (struct rc_dirent64 *)(buf + off);
            off += de->reclen;
            const char *name = de->name;
            if (!strcmp(name, ".") || !strcmp(name, ".."))
                continue;
            struct stat st;
            if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -1;
            int rc;
            if (S_ISDIR(st.st_mode)) {
                rc = mkdirat(dst, name, 0700);
                if (rc == 0) {
                    int s = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                    int d = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                    rc = s < 0 || d < 0 ? -1 : copy_tree(s, d, depth + 1);
                    int e = errno;
                    if (s >= 0)
                        close(s);
                    if (d >= 0)
                        close(d);
                    errno = e;
                }
            } else if (S_ISREG(st.st_mode)) {
                rc = copy_file(src, dst, name, 0600);
            } else if (S_ISLNK(st.st_mode)) {
                rc = copy_symlink(src, dst, name);
            } else {
                rc = mknodat(dst, name, st.st_mode, st.st_rdev);  /* fifo, socket, device */
            }
            if (rc == 0)
                rc = fchownat(dst, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
            /* the mode last: chown clears set-id bits */
            if (rc == 0 && !S_ISLNK(st.st_mode))
                rc = fchmodat(dst, name, st.st_mode & 07777, 0);
            if (rc < 0)
                return -1;
        }
    }
}

/* procfs and sysfs go on an ordinary directory only, never through a symlink the rootfs
 * holds at their destination (the CVE-2019-19921 class): ENOTDIR, as runc refuses. */
static int check_ordinary_dir(int rootfd, const char *path)
{
    char name[256];
    int dir = open_parent_in_root(rootfd, path, name, sizeof name);
    if (dir < 0)
        return -1;
    struct stat st;
    int r = fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW);
    int e = errno;
    close(dir);
    if (r == 0 && !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    errno = e;
    return r == 0 || e == ENOENT ? 0 : -1;
}

int do_mount(int rootfd, const struct rc_op *op, int index)
{
    int fd;
    if (op->fstype && (!strcmp(op->fstype, "proc") || !strcmp(op->fstype, "sysfs")) &&
        !(op->flags & MS_REMOUNT) && check_ordinary_dir(rootfd, op->path) < 0)
        return -1;
    /* op->a: 1 when the target is a file (binding a file), op->b/op->c: recursive attrs */
    if (op->a == 1)
        fd = mkfile_in_root(rootfd, op->path);
    else
        fd = mkdir_in_root(rootfd, op->path, 0755);
    if (fd < 0)
        return -1;
    unsigned long flags = op->flags;
    int rc;
    /* op->d: tmpcopyup (a tmpfs): keep a handle on the directory it will cover, mount,
     * copy that directory's contents in (a read-only tmpfs is planned read-write, and
     * remounted read-only after every mount) */
    int below = -1;
    if (op->d) {
        below = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (below < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    int dir = op->a != 1;
    if (flags & MS_REMOUNT)
        rc = remount_on(fd, dir, flags & ~(unsigned long)MS_REMOUNT);
    else if (op->e) {
        /* id-mapped: only the runtime, in our mount namespace but the host's user
         * namespace, may make it (rc_idmapped_mount): it gets the target and mounts */
        rc = send_fd(fd, index);
        if (rc == 0)
            wait_go(index);
    }
    else if (!op->src && !op->fstype && !flags)
        rc = 0;  /* only a propagation change (rootfsPropagation on "/") */
    else
        rc = mount_on(fd, dir, op->src, op->fstype, flags, op->data);
    if (below >= 0) {
        int above = rc == 0 ? open_in_root(rootfd, op->path, O_RDONLY | O_DIRECTORY) : -1;
        if (rc == 0)
            rc = above < 0 ? -1 : copy_tree(below, above, 0);
        int e = errno;
        close(below);
        if (above >= 0)
            close(above);
        errno = e;
    }
    if (rc == 0 && (flags & MS_BIND)) {
        /* a bind ignores every flag but MS_REC: apply the rest with a remount */
        unsigned long rest = flags & ~(MS_BIND | MS_REC | MS_REMOUNT);
        if (rest) {
            /* the fd points at the mount below: reopen to reach the new one */
            close(fd);
            fd = op->a == 1 ? open_in_root(rootfd, op->path, O_PATH)
                            : open_in_root(rootfd, op->path, O_PATH | O_DIRECTORY);
            if (fd < 0)
                return -1;
            rc = remount_on(fd, dir, MS_BIND | rest);
        }
    }
    if (rc == 0 && (op->pflags || op->b || op->c)) {
        close(fd);
        fd = open_in_root(rootfd, op->path, O_PATH);
        if (fd < 0)
            return -1;
        for (unsigned long bit = 1; rc == 0 && bit; bit <<= 1)
            if ((op->pflags & ~(unsigned long)MS_REC) & bit)
                rc = mount_on(fd, dir, NULL, NULL, bit | (op->pflags & MS_REC), NULL);
        if (rc == 0 && (op->b || op->c)) {
            struct rc_mount_attr attr = { op->b, op->c, 0, 0 };
            rc = syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
        }
    }
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int do_mask(int rootfd, const char *path)
{
    int fd = open_in_root(rootfd, path, O_PATH);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    int rc;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = mount_on(fd, 1, "tmpfs", "tmpfs", MS_RDONLY, "size=0");
    } else {
        /* the container's /dev/null, but only if it really is the null device: a rootfs
         * (or a bind-mounted /dev) where it is a symlink to, say, core_pattern would have
         * us bind a host-global file writable over the masked path (CVE-2025-31133) */
        int nfd = open_in_root(rootfd, "/dev/null", O_PATH | O_NOFOLLOW);
        struct stat nst;
        if (nfd < 0) {
            rc = -1;
        } else if (fstat(nfd, &nst) < 0 || !S_ISCHR(nst.st_mode) ||
                   nst.st_rdev != makedev(1, 3)) {
            errno = ENODEV;
            rc = -1;
        } else {
            char src[64];
            fdpath(src, sizeof src, nfd);
            rc = mount_on(fd, 0, src, NULL, MS_BIND, NULL);
        }
        int e = errno;
        if (nfd >= 0)
            close(nfd);
        errno = e;
    }
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int do_readonly(int rootfd, const char *path)
{
    int fd = open_in_root(rootfd, path, O_PATH);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    char target[64];
    fdpath(target, sizeof target, fd);
    int rc = mount_on(fd, 1, target, NULL, MS_BIND | MS_REC, NULL);
    close(fd);
    if (rc < 0)
        return -1;
    fd = open_in_root(rootfd, path, O_PATH);
    if (fd < 0)
        return -1;
    /* read-only, nothing more: nosuid/nodev/noexec only where the path had them already
     * (runc's readonlyPath); a read-only /usr/bin still runs its programs */
    unsigned long keep = locked_flags_fd(fd) & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
    rc = remount_on(fd, 1, MS_BIND | MS_REC | MS_RDONLY | keep);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int write_file(int rootfd, const char *path, const char *data)
{
    int fd = rootfd >= 0 ? open_in_root(rootfd, path, O_WRONLY | O_TRUNC)
                         : open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = strlen(data);
    ssize_t n = write(fd, data, len);
    int e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return -1;
    }
    return 0;
}

/* Undo mountinfo's octal escapes (\040 for a space…) in place. */
static void unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* One mountinfo line: the mount's id, whether it is a whole (root "/") procfs or sysfs,
 * and its mount point. 0 when it is not one. */
static int full_proc_or_sys(char *line, int *id, char **mnt)
{
    char *f[6];
    int n = 0;
    char *save = NULL;
    while (n < 6 && (f[n] = strtok_r(n ? NULL : line, " ", &save)))
        n++;
    if (n < 6)
        return 0;
    char *fstype = NULL;
    for (char *t = strtok_r(NULL, " ", &save); t; t = strtok_r(NULL, " ", &save))
        if (!strcmp(t, "-")) {
            fstype = strtok_r(NULL, " ", &save);
            break;
        }
    if (!fstype || strcmp(f[3], "/") || (strcmp(fstype, "proc") && strcmp(fstype, "sysfs")))
        return 0;
    *id = atoi(f[0]);
    unescape(f[4]);
    *mnt = f[4];
    return 1;
}

/* The first whole procfs or sysfs outside `rootfs` not yet in done[]: its id (and path in
 * `out`), or 0 when there is none left. */
static int next_host_proc_or_sys(int mi, const char *rootfs, const int *done, int ndone,
                                 char *out, size_t outsz)
{
    static char buf[8192];
    size_t len = 0, rlen = strlen(rootfs);
    if (lseek(mi, 0, SEEK_SET) < 0)
        return -1;
    for (;;) {
        ssize_t n;
        do n = read(mi, buf + len, sizeof buf - 1 - len); while (n < 0 && errno == EINTR);
        if (n < 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        char *start = buf, *nl;
        while ((nl = strchr(start, '\n'))) {
            *nl = '\0';
            int id = 0;
            char *mnt = NULL;
            if (full_proc_or_sys(start, &id, &mnt) &&
                !(strncmp(mnt, rootfs, rlen) == 0 && (mnt[rlen] == '/' || mnt[rlen] == '\0'))) {
                int seen = 0;
                for (int i = 0; i < ndone; i++)
                    seen |= done[i] == id;
                if (!seen && strlen(mnt) < outsz) {
                    strcpy(out, mnt);
                    return id;
                }
            }
            start = nl + 1;
        }
        len = strlen(start);
        memmove(buf, start, len);
        if (n == 0)
            return 0;
        if (len >= sizeof buf - 1)
            len = 0;  /* a line too long to be a proc or sys mount's: skip it */
    }
}

/* Before MS_MOVE + chroot: the host's procfs and sysfs mounts stay in our mount namespace
 * below the new root, and the kernel lets a process with a user namespace of its own
 * mount a fresh procfs (or sysfs) as long as a fully visible one is anywhere in the mount
 * namespace. Take them away (lazily), or cover them where that is refused, as runc's
 * msMoveRoot does. Our "/" is already a slave: nothing of this reaches the host. */
static int hide_host_proc_and_sys(const char *rootfs)
{
    int mi = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (mi < 0)
        return -1;
    int done[256], ndone = 0, id;
    char mnt[4096];
    while (ndone < 256 && (id = next_host_proc_or_sys(mi, rootfs, done, ndone, mnt, sizeof mnt)) > 0) {
        done[ndone++] = id;
        /* the unmount must not reach the host's peer of it (rootfsPropagation shared) */
        if (mount(NULL, mnt, NULL, MS_SLAVE | MS_REC, NULL) < 0 && errno == ENOENT)
            continue;
        if (umount2(mnt, MNT_DETACH) == 0 || errno == ENOENT)
            continue;
        if ((errno == EINVAL || errno == EPERM) && mount("tmpfs", mnt, "tmpfs", MS_RDONLY, "size=0") == 0)
            continue;
        if (errno == ENOENT)
            continue;  /* a mount point already gone with a parent */
        int e = errno;
        close(mi);
        errno = e;
        return -1;
    }
    int e = errno;
    close(mi);
    errno = e;
    return id < 0 ? -1 : 0;
}

/* The mount `path` is on gets `flags` (MS_PRIVATE or MS_SLAVE): the first of path and
 * its parents that is a mount point (EINVAL: not one, go up), as runc's
 * rootfsParentMountPropagation. Binding the rootfs on itself must not propagate to the
 * host when "/" was made shared, and pivot_root refuses a shared parent. */
int parent_propagation(const char *path, unsigned long flags)
{
    char p[4096];
    size_t n = strlen(path);
    if (n >= sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(p, path, n + 1);
    for (;;) {
        if (mount(NULL, p, NULL, flags, NULL) == 0)
            return 0;
        if (errno != EINVAL || strcmp(p, "/") == 0)
            return -1;
        char *slash = strrchr(p, '/');
        if (slash == p)
            p[1] = 0;
        else
            *slash = 0;
    }
}

/* use_move 0: pivot_root; 1: MS_MOVE + chroot (--no-pivot); 2: chroot only, for a
 * container in the runtime's mount namespace (moving or pivoting would be the host's) */
int pivot(const char *rootfs, int use_move)
{
    if (chdir(rootfs) < 0)
        return -1;
    if (use_move == 2)
        return chroot(".") < 0 ? -1 : chdir("/");
    if (!use_move) {
        /* pivot_root(".", ".") stacks the old root on the new one; detach it at once */
        int old = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (old < 0)
            return -1;
        if (syscall(SYS_pivot_root, ".", ".") == 0) {
            /* The old root an rslave first: with rootfsPropagation shared it is the host's
             * peer, and its unmount would reach the host's mounts. "." must be the old
             * root's own directory for that (runc fchdirs to it too): from the new root's,
             * mount(2) would make the container's tree the slave, volumes and all. */
            int rc = fchdir(old);
            if (rc == 0)
                rc = mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL);
            if (rc == 0)
                rc = umount2(".", MNT_DETACH);
            int e = errno;
            close(old);
            errno = e;
            return rc < 0 ? -1 : chdir("/");
        }
        int e = errno;
        close(old);
        errno = e;
        if (errno != EINVAL)
            return -1;
        /* not pivotable (e.g. the rootfs lives on the initramfs): move it instead */
    }
    if (hide_host_proc_and_sys(rootfs) < 0)
        return -1;
    /* a mount moved onto a shared "/" would propagate to its peers: the host's "/" */
    if (mount(NULL, "/", NULL, MS_SLAVE, NULL) < 0)
        return -1;
    if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0)
        return -1;
    if (chroot(".") < 0)
        return -1;
    return chdir("/");
}
