/* Paths inside the container's root: every path is resolved with openat2(RESOLVE_IN_ROOT)
 * (CVE-2021-30465); directories are made and files opened below the root's fd. */
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

/* ---- paths inside the root ---------------------------------------------------------- */

/* Open `path` with every component resolved inside `rootfd`: a symlink in the rootfs can
 * never lead out of it (CVE-2021-30465). */
int open_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how = { 0 };
    how.flags = flags | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    while (*path == '/')
        path++;
    if (!*path)
        path = ".";
    int fd;
    do fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how); while (fd < 0 && errno == EAGAIN);
    return fd;
}

/* mkdir -p inside the root; returns an O_PATH fd of the final directory. A dangling
 * symlink on the way (rootfs/evil -> /tmp/x) has its target created inside the root, as
 * runc's MkdirAllInRoot does: nothing is ever created or mounted outside the rootfs. */
static int mkdir_in_root_depth(int rootfd, const char *path, mode_t mode, int depth);

int mkdir_in_root(int rootfd, const char *path, mode_t mode)
{
    return mkdir_in_root_depth(rootfd, path, mode, 0);
}

/* `name` (in directory `dir`, reached by the root-relative prefix `prefix`) is a dangling
 * symlink: create its target inside the root. */
static int mkdir_link_target(int rootfd, int dir, const char *prefix, size_t plen,
                             const char *name, mode_t mode, int depth)
{
    char link[4096], target[4096];
    if (depth >= 16) {
        errno = ELOOP;
        return -1;
    }
    ssize_t n = readlinkat(dir, name, link, sizeof link - 1);
    if (n < 0)
        return -1;
    link[n] = '\0';
    size_t off = 0;
    if (link[0] != '/') {
        /* relative: from the directory holding the link */
        if (plen >= sizeof target) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(target, prefix, plen);
        off = plen;
    }
    if (off + (size_t)n + 1 > sizeof target) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(target + off, link, (size_t)n + 1);
    int fd = mkdir_in_root_depth(rootfd, target, mode, depth + 1);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int mkdir_in_root_depth(int rootfd, const char *path, mode_t mode, int depth)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    int fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    /* Mount points are mostly one level below a directory that exists (dev/pts,
     * sys/fs/cgroup/cpu): try the parent first, which saves the walk from the top (two
     * syscalls per level). Anything else — a missing parent, a dangling symlink as the
     * last component — takes the walk. */
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash && slash != buf && slash[1]) {
        *slash = '\0';
        int parent = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        *slash = '/';
        if (parent >= 0) {
            const char *last = slash + 1;
            int made = mkdirat(parent, last, mode);
            int e = errno;
            /* a directory we just made, below a parent resolved in the root: open it from
             * there (one component, no symlink followed) rather than walk the whole path
             * again — what an existing entry is, a symlink perhaps, takes the walk */
            if (made == 0 && strcmp(last, ".") && strcmp(last, "..")) {
                fd = openat(parent, last, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                e = errno;
                close(parent);
                errno = e;
                return fd;
            }
            close(parent);
            if (made < 0 && e != EEXIST) {
                errno = e;
                return -1;
            }
            fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
            if (fd >= 0 || errno != ENOENT)
                return fd;
        }
    }
    /* walk from the top, creating what is missing */
    int cur = open_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
    if (cur < 0)
        return -1;
    char *p = buf;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        char *end = strchr(p, '/');
        if (end)
            *end = '\0';
        if (mkdirat(cur, p, mode) < 0 && errno != EEXIST) {
            close(cur);
            return -1;
        }
        /* re-resolve the prefix from the root: the component may be a symlink */
        int next = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        if (next < 0 && errno == ENOENT) {
            if (mkdir_link_target(rootfd, cur, buf, (size_t)(p - buf), p, mode, depth) < 0) {
                int e = errno == EINVAL ? ENOENT : errno;  /* EINVAL: not a symlink */
                close(cur);
                errno = e;
                return -1;
            }
            next = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        }
        close(cur);
        if (next < 0)
            return -1;
        cur = next;
        if (!end)
            break;
        *end = '/';
        p = end + 1;
    }
    return cur;
}

/* Split path into (parent dir fd, last component). */
int open_parent_in_root(int rootfd, const char *path, char *name, size_t namesz)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    char *slash = strrchr(buf, '/');
    const char *last = slash ? slash + 1 : buf;
    if (strlen(last) >= namesz) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(name, last);
    if (slash)
        *slash = '\0';
    else
        strcpy(buf, "/");
    return mkdir_in_root(rootfd, buf[0] ? buf : "/", 0755);
}

/* open_parent_in_root, reusing `d`'s directory when the previous entry op had the same
 * parent. Only MKNOD and SYMLINK run between two calls: they unlink a non-directory and
 * create entries, so what the parent's path resolves to cannot have changed meanwhile. */
int entry_parent(struct entry_dir *d, int rootfd, const char *path, char *name, size_t namesz)
{
    const char *slash = strrchr(path, '/');
    size_t plen = slash ? (size_t)(slash - path) : 0;
    if (d->fd >= 0 && d->reusable && slash && slash[1] && plen < sizeof d->path &&
        !strncmp(d->path, path, plen) && d->path[plen] == '\0' && strlen(slash + 1) < namesz) {
        strcpy(name, slash + 1);
        return d->fd;
    }
    entry_parent_drop(d);
    int fd = open_parent_in_root(rootfd, path, name, namesz);
    d->fd = fd;  /* dropped (closed) by the next call or op either way */
    d->reusable = fd >= 0 && slash && slash[1] && plen < sizeof d->path;
    if (d->reusable) {
        memcpy(d->path, path, plen);
        d->path[plen] = '\0';
    }
    return fd;
}

void entry_parent_drop(struct entry_dir *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    d->reusable = 0;
    d->path[0] = '\0';
}

/* Make sure a regular file exists at path (a bind target for a file); O_PATH fd of it. */
int mkfile_in_root(int rootfd, const char *path)
{
    int fd = open_in_root(rootfd, path, O_PATH);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    char name[256];
    int dir = open_parent_in_root(rootfd, path, name, sizeof name);
    if (dir < 0)
        return -1;
    int wfd = openat(dir, name, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    close(dir);
    if (wfd < 0 && errno != EEXIST)
        return -1;
    if (wfd >= 0)
        close(wfd);
    return open_in_root(rootfd, path, O_PATH);
}

/* chdir to `path` resolved inside the root (the current one when rootfd < 0): a magic
 * link such as /proc/self/fd/N, naming an fd the child still holds until execve, can never
 * put the process's cwd on the host (CVE-2024-21626). */
int chdir_in_root(int rootfd, const char *path)
{
    int root = rootfd >= 0 ? rootfd : open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -1;
    int fd = open_in_root(root, path, O_PATH | O_DIRECTORY);
    int e = errno;
    if (root != rootfd)
        close(root);
    if (fd < 0) {
        errno = e;
        return -1;
    }
    int rc = fchdir(fd);
    e = errno;
    close(fd);
    errno = e;
    return rc;
}

void fdpath(char *buf, size_t sz, int fd)
{
    snprintf(buf, sz, "/proc/self/fd/%d", fd);
}

/* ---- mounting on an fd: through the cwd ------------------------------------------------ */

/* A mount on a directory the child holds an fd of goes through its cwd, fchdir(fd) and
 * mount on ".", rather than through /proc/self/fd/N: that magic link's walk (/proc, self,
 * this new process's pid directory made anew for every child, fd, N) is a good part of a
 * small mount's cost, some forty times a container (A/B: shim.spawn -0.025 ms). "." is the
 * fd's own {mount, directory}, exactly what the link leads to (neither goes on to a mount
 * on top). The child's cwd is kept meanwhile (cwd_keep) and put back before any op that
 * might resolve a relative path against it (child_main), and before a mount whose source
 * is a relative path. Thread-local, like sync_fd: a CLONE_VM child runs on its cloning
 * thread's copy, reset at its start (child_main: cwd_reset). */
static __thread int cwd_keep = -2;  /* -2: not saved yet, -1: cannot be (then the link) */
static __thread int cwd_moved;

void cwd_reset(void)
{
    cwd_keep = -2;
    cwd_moved = 0;
}

int cwd_back(void)
{
    if (!cwd_moved)
        return 0;
    if (fchdir(cwd_keep) < 0)
        return -1;
    cwd_moved = 0;
    return 0;
}

/* after pivot_root or chroot, which set the cwd themselves: the one kept is the old root's */
void cwd_forget(void)
{
    if (cwd_keep >= 0)
        close(cwd_keep);
    cwd_reset();
}

static int cwd_enter(int fd)
{
    if (cwd_keep == -2) {
        cwd_keep = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (cwd_keep < 0)
            cwd_keep = -1;
    }
    if (cwd_keep < 0 || fchdir(fd) < 0)
        return -1;  /* (fchdir failing leaves the cwd as it was) */
    cwd_moved = 1;
    return 0;
}

/* a source that is no path relative to the cwd: none, absolute, or a filesystem's name */
static int src_needs_no_cwd(const char *src, const char *fstype, unsigned long flags)
{
    static const char *const named[] = { "proc", "sysfs", "tmpfs", "devpts", "mqueue",
                                         "cgroup", "cgroup2" };
    if (!src || src[0] == '/')
        return 1;
    if ((flags & (MS_BIND | MS_MOVE)) || !fstype)
        return 0;
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (!strcmp(fstype, named[i]))
            return 1;
    return 0;
}

/* mount(2) with the target an fd; `dir`: the fd is a directory's (else only the link) */
int mount_on(int fd, int dir, const char *src, const char *fstype, unsigned long flags,
             const void *data)
{
    int free_src = src_needs_no_cwd(src, fstype, flags);
    if (dir && free_src && cwd_enter(fd) == 0)
        return mount(src, ".", fstype, flags, data);
    if (!free_src && cwd_back() < 0)
        return -1;
    char target[64];
    fdpath(target, sizeof target, fd);
    return mount(src, target, fstype, flags, data);
}

static unsigned long statvfs_flags(const struct statvfs *s)
{
    unsigned long f = 0;
    if (s->f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (s->f_flag & ST_NODEV) f |= MS_NODEV;
    if (s->f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (s->f_flag & ST_RDONLY) f |= MS_RDONLY;
    if (s->f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (s->f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (s->f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

/* locked_flags of the mount the fd is on */
unsigned long locked_flags_fd(int fd)
{
    struct statvfs s;
    return fstatvfs(fd, &s) < 0 ? 0 : statvfs_flags(&s);
}

/* remount for an fd */
int remount_on(int fd, int dir, unsigned long flags)
{
    if (mount_on(fd, dir, NULL, NULL, flags | MS_REMOUNT, NULL) == 0)
        return 0;
    if (errno != EPERM)
        return -1;
    return mount_on(fd, dir, NULL, NULL, flags | MS_REMOUNT | locked_flags_fd(fd), NULL);
}

/* A remount inside a user namespace must keep the flags the kernel locked on the mount. */
unsigned long locked_flags(const char *target)
{
    struct statvfs s;
    return statvfs(target, &s) < 0 ? 0 : statvfs_flags(&s);
}

int remount(const char *target, unsigned long flags)
{
    if (mount(NULL, target, NULL, flags | MS_REMOUNT, NULL) == 0)
        return 0;
    if (errno != EPERM)
        return -1;
    return mount(NULL, target, NULL, flags | MS_REMOUNT | locked_flags(target), NULL);
}
