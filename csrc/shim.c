/* The mechanism: clone the container's init and run a plan that Python already decided.
 *
 * The child never returns into Python: after clone it runs only this file, using no heap
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

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

enum { MSG_USERNS = 1, MSG_WAITGO = 2, MSG_ERROR = 3, MSG_FD = 4, MSG_CREATED = 5, MSG_CHILD = 6,
       MSG_SYNC = 7 };

/* a hook that failed reports errno HOOK_STATUS + its exit status, or HOOK_TIMEOUT */
enum { HOOK_STATUS = 100000, HOOK_TIMEOUT = 99999, HOOK_SIGNAL = 200000 };

/* thread-local: children cloned with CLONE_VM (share_memory) from several threads at once
 * each set the copy of the thread that cloned them (that thread waits, suspended) */
static __thread int sync_fd = -1;
/* the container's state JSON, sent by the parent with a go: the hooks' stdin */
static char state_buf[65536];
static size_t state_len;

/* The id changes as raw syscalls: glibc's setresuid/setgroups wrappers signal every other
 * thread of the process (its thread list, copied from a parent with threads, names threads
 * that do not exist in this child) and wait for them forever. A program running containers
 * from several threads (libcontainer.run_many) hung there. */
static int id_setresuid(uid_t u) { return (int)syscall(SYS_setresuid, u, u, u); }
static int id_setresgid(gid_t g) { return (int)syscall(SYS_setresgid, g, g, g); }

/* ---- talking to the parent --------------------------------------------------------- */

static void send_msg(int type, int op, int err, int pid)
{
    struct rc_msg m = { type, op, err, pid };
    ssize_t n;
    do n = send(sync_fd, &m, sizeof m, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
}

static __attribute__((noreturn)) void fail(int op, int err)
{
    send_msg(MSG_ERROR, op, err, 0);
    _exit(1);
}

/* Block until the parent says go. EOF means the parent died or gave up: so do we. A go
 * longer than one byte carries the state JSON for the hooks. */
static void wait_go(int op)
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

static int send_fd(int fd, int op)
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

/* ---- paths inside the root ---------------------------------------------------------- */

/* Open `path` with every component resolved inside `rootfd`: a symlink in the rootfs can
 * never lead out of it (CVE-2021-30465). */
static int open_in_root(int rootfd, const char *path, int flags)
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

static int mkdir_in_root(int rootfd, const char *path, mode_t mode)
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
            int made = mkdirat(parent, slash + 1, mode);
            int e = errno;
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
static int open_parent_in_root(int rootfd, const char *path, char *name, size_t namesz)
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

/* Make sure a regular file exists at path (a bind target for a file); O_PATH fd of it. */
static int mkfile_in_root(int rootfd, const char *path)
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
static int chdir_in_root(int rootfd, const char *path)
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

static void fdpath(char *buf, size_t sz, int fd)
{
    snprintf(buf, sz, "/proc/self/fd/%d", fd);
}

/* A remount inside a user namespace must keep the flags the kernel locked on the mount. */
static unsigned long locked_flags(const char *target)
{
    struct statvfs s;
    unsigned long f = 0;
    if (statvfs(target, &s) < 0)
        return 0;
    if (s.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (s.f_flag & ST_NODEV) f |= MS_NODEV;
    if (s.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (s.f_flag & ST_RDONLY) f |= MS_RDONLY;
    if (s.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (s.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (s.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

static int remount(const char *target, unsigned long flags)
{
    if (mount(NULL, target, NULL, flags | MS_REMOUNT, NULL) == 0)
        return 0;
    if (errno != EPERM)
        return -1;
    return mount(NULL, target, NULL, flags | MS_REMOUNT | locked_flags(target), NULL);
}

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

struct rc_mount_attr { uint64_t set, clr, propagation, userns_fd; };
#define RC_MOUNT_ATTR_IDMAP 0x00100000
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif

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

static int do_mount(int rootfd, const struct rc_op *op, int index)
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
    char target[64];
    fdpath(target, sizeof target, fd);
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
    if (flags & MS_REMOUNT)
        rc = remount(target, flags & ~(unsigned long)MS_REMOUNT);
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
        rc = mount(op->src, target, op->fstype, flags, op->data);
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
            fdpath(target, sizeof target, fd);
            rc = remount(target, MS_BIND | rest);
        }
    }
    if (rc == 0 && (op->pflags || op->b || op->c)) {
        close(fd);
        fd = open_in_root(rootfd, op->path, O_PATH);
        if (fd < 0)
            return -1;
        fdpath(target, sizeof target, fd);
        for (unsigned long bit = 1; rc == 0 && bit; bit <<= 1)
            if ((op->pflags & ~(unsigned long)MS_REC) & bit)
                rc = mount(NULL, target, NULL, bit | (op->pflags & MS_REC), NULL);
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

static int do_mask(int rootfd, const char *path)
{
    int fd = open_in_root(rootfd, path, O_PATH);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    char target[64];
    fdpath(target, sizeof target, fd);
    int rc;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0");
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
            rc = mount(src, target, NULL, MS_BIND, NULL);
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

static int do_readonly(int rootfd, const char *path)
{
    int fd = open_in_root(rootfd, path, O_PATH);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    char target[64];
    fdpath(target, sizeof target, fd);
    int rc = mount(target, target, NULL, MS_BIND | MS_REC, NULL);
    close(fd);
    if (rc < 0)
        return -1;
    fd = open_in_root(rootfd, path, O_PATH);
    if (fd < 0)
        return -1;
    fdpath(target, sizeof target, fd);
    /* read-only, nothing more: nosuid/nodev/noexec only where the path had them already
     * (runc's readonlyPath); a read-only /usr/bin still runs its programs */
    unsigned long keep = locked_flags(target) & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
    rc = remount(target, MS_BIND | MS_REC | MS_RDONLY | keep);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int write_file(int rootfd, const char *path, const char *data)
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
static int parent_propagation(const char *path, unsigned long flags)
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
static int pivot(const char *rootfs, int use_move)
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

static int loopback_up(void)
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

/* Dropping from the bounding set needs CAP_SETPCAP: done before the uid changes. */
static int drop_bounding(unsigned long long keep, int last_cap)
{
    for (int cap = 0; cap <= last_cap; cap++)
        if (!(keep & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    return 0;
}

static int set_caps(const struct rc_op *op, int last_cap)
{
    /* b: effective, c: permitted, d: inheritable, e: ambient */
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(op->b >> (32 * i));
        data[i].permitted = (uint32_t)(op->c >> (32 * i));
        data[i].inheritable = (uint32_t)(op->d >> (32 * i));
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    for (int cap = 0; cap <= last_cap; cap++)
        if ((op->e & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return -1;
    return 0;
}

static int load_seccomp(const struct rc_op *op, int index)
{
    struct sock_fprog prog = { (unsigned short)(op->len / sizeof(struct sock_filter)),
                               (struct sock_filter *)op->data };
    unsigned long flags = op->flags;
    if (op->a)
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
    int rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (rc < 0)
        return -1;
    if (op->a) {
        /* the listener fd goes to the parent, which hands it to listenerPath; nothing
         * of the container runs until it is delivered (or the parent gives up and kills us) */
        if (send_fd(rc, index) < 0)
            return -1;
        close(rc);
        wait_go(index);
    }
    return 0;
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

/* The bind target for the pty: a fresh regular file at /dev/console. Whatever the image
 * put there is removed first: a symlink would otherwise aim the bind at, say, a procfs
 * file (the CVE-2025-52565 class). On a read-only /dev, an existing file or device node
 * (never a symlink) is used as it is. */
static int console_target(void)
{
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int dev = root < 0 ? -1 : mkdir_in_root(root, "/dev", 0755);
    if (root >= 0)
        close(root);
    if (dev < 0)
        return -1;
    int fd = -1;
    if (unlinkat(dev, "console", 0) == 0 || errno == ENOENT) {
        fd = openat(dev, "console", O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    } else if (errno == EROFS) {
        struct stat st;
        if (fstatat(dev, "console", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)))
            fd = openat(dev, "console", O_PATH | O_NOFOLLOW | O_CLOEXEC);
        else
            errno = ELOOP;
    }
    int e = errno;
    close(dev);
    errno = e;
    return fd;
}

static int console(int index, uid_t uid, gid_t gid, int no_dev_console)
{
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return -1;
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        return -1;
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (slave < 0)
        return -1;
    /* the slave belongs to the process's user, and is the container's /dev/console; its
     * group stays the one devpts gave it (gid=5, tty, as the mount says), as runc and crun
     * leave it */
    (void)gid;
    if (fchown(slave, uid, (gid_t)-1) < 0)
        return -1;
    if (!no_dev_console) {
        int cfd = console_target();
        if (cfd < 0)
            return -1;
        char src[64], dst[64];
        fdpath(src, sizeof src, slave);
        fdpath(dst, sizeof dst, cfd);
        int rc = mount(src, dst, NULL, MS_BIND, NULL);
        close(cfd);
        if (rc < 0)
            return -1;
    }
    if (send_fd(master, index) < 0)
        return -1;
    close(master);
    wait_go(index);  /* the parent sizes the pty first: the process may look at it at once */
    if (setsid() < 0 && errno != EPERM)
        return -1;
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (dup2(slave, i) < 0)
            return -1;
    if (slave > 2)
        close(slave);
    return 0;
}

/* Run a hook with the state on stdin, as the spec says; wait at most `timeout` seconds. */
static int run_hook(const struct rc_op *op)
{
    char *argv[256], *envp[256];
    const char *p = op->data;
    unsigned na = (unsigned)op->a, ne = (unsigned)op->b;
    if (na > 255 || ne > 255) {
        errno = E2BIG;
        return -1;
    }
    for (unsigned i = 0; i < na; i++, p += strlen(p) + 1)
        argv[i] = (char *)p;
    argv[na] = NULL;
    for (unsigned i = 0; i < ne; i++, p += strlen(p) + 1)
        envp[i] = (char *)p;
    envp[ne] = NULL;
    if (na == 0)
        argv[0] = (char *)op->path, argv[1] = NULL;
    int in[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0); /* its own group: a timeout kills what it started too */
        dup2(in[0], 0);
        execve(op->path, argv, envp);
        _exit(127);
    }
    close(in[0]);
    /* the hook may not read its stdin: don't let a full pipe block us */
    signal(SIGPIPE, SIG_IGN);
    if (write(in[1], state_buf, state_len) < 0 && errno != EPIPE) { /* ignored */ }
    close(in[1]);
    signal(SIGPIPE, SIG_DFL);
    int status;
    int pidfd = op->c ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    if (pidfd >= 0) {
        struct pollfd pfd = { pidfd, POLLIN, 0 };
        int r;
        do r = poll(&pfd, 1, (int)op->c * 1000); while (r < 0 && errno == EINTR);
        close(pidfd);
        if (r == 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            errno = HOOK_TIMEOUT;
            return -1;
        }
    } else if (op->c) {
        /* no pidfd_open (an older kernel, or a seccomp filter of before Linux 5.3 already
         * loaded): poll the child every 10 ms */
        struct timespec tick = { 0, 10 * 1000 * 1000 };
        for (unsigned long long waited = 0;; waited += 10) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid)
                goto reaped;
            if (w < 0 && errno != EINTR)
                return -1;
            if (waited >= op->c * 1000) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                errno = HOOK_TIMEOUT;
                return -1;
            }
            nanosleep(&tick, NULL);
        }
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
reaped:
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    errno = WIFEXITED(status) ? HOOK_STATUS + WEXITSTATUS(status) : HOOK_SIGNAL + WTERMSIG(status);
    return -1;
}

/* execvpe() searches the caller's PATH; the container's PATH is in the plan. */
static int exec_search(const struct rc_plan *plan)
{
    const char *file = plan->argv[0];
    if (strchr(file, '/') || !plan->path_env) {
        execve(file, (char *const *)plan->argv, (char *const *)plan->envp);
        return -1;
    }
    int saved = ENOENT;
    char buf[4096];
    const char *p = plan->path_env;
    while (1) {
        const char *end = strchrnul(p, ':');
        size_t dl = end - p;
        if (dl == 0) {
            dl = 1;
            p = ".";
        }
        if (dl + 1 + strlen(file) < sizeof buf) {
            memcpy(buf, p, dl);
            buf[dl] = '/';
            strcpy(buf + dl + 1, file);
            execve(buf, (char *const *)plan->argv, (char *const *)plan->envp);
            if (errno != ENOENT && errno != ENOTDIR)
                saved = errno;
        }
        if (!*end)
            break;
        p = end + 1;
    }
    errno = saved;
    return -1;
}

/* 0 if execve could run `path` as far as the file itself goes; -1 with ENOENT or EACCES
 * (a directory, no x bit for us, a noexec mount) otherwise. */
static int executable(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    if (S_ISDIR(st.st_mode)) {
        errno = EACCES;
        return -1;
    }
    return faccessat(AT_FDCWD, path, X_OK, AT_EACCESS);
}

/* Before blocking on the exec fifo: resolve process.args[0] the way exec_search will (same
 * PATH, same user, same cwd) and, if it is missing or not executable, fail now with the
 * EXEC op's index. runc does the same (it looks the program up before it waits for
 * `start`): engines learn of a missing program from `create` (podman maps the message to
 * exit status 127 or 126, containerd reports it), not from a bare exit status 1 after
 * `start`. Any other error (e.g. a seccomp filter refusing stat) is left to execve. */
static void exec_check(const struct rc_plan *plan, int from)
{
    int exec_op = -1;
    for (int j = from; j < plan->nops; j++)
        if (plan->ops[j].kind == RC_OP_EXEC)
            exec_op = j;
    if (exec_op < 0)
        return;
    const char *file = plan->argv[0];
    int err;
    if (strchr(file, '/') || !plan->path_env) {
        if (executable(file) == 0)
            return;
        err = errno == ENOTDIR ? ENOENT : errno;
    } else {
        char buf[4096];
        const char *p = plan->path_env;
        err = ENOENT;
        while (1) {
            const char *end = strchrnul(p, ':');
            const char *dir = end == p ? "." : p;
            size_t dl = end == p ? 1 : (size_t)(end - p);
            if (dl + 1 + strlen(file) < sizeof buf) {
                memcpy(buf, dir, dl);
                buf[dl] = '/';
                strcpy(buf + dl + 1, file);
                if (executable(buf) == 0)
                    return;
                if (errno != ENOENT && errno != ENOTDIR)
                    err = errno;
            }
            if (!*end)
                break;
            p = end + 1;
        }
    }
    if (err == ENOENT || err == EACCES)
        fail(exec_op, err);
}

static int last_cap(void)
{
    char buf[16] = { 0 };
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 40;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? atoi(buf) : 40;
}

/* ---- the child ---------------------------------------------------------------------- */

/* fds of the namespaces to join, all opened before the first setns: joining a mount
 * namespace changes what /proc/<pid>/ns/... resolves to */
static int join_fds[32];

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

static __attribute__((noreturn)) void child_main(const struct rc_plan *plan, int in_clone)
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
    for (int i = first; i < plan->nops; i++) {
        const struct rc_op *op = &plan->ops[i];
        int rc = 0;
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
            int dir = open_parent_in_root(rootfd, op->path, name, sizeof name);
            if (dir < 0) { rc = -1; break; }
            unlinkat(dir, name, 0);
            rc = mknodat(dir, name, (mode_t)op->a, (dev_t)op->b);
            if (rc == 0) rc = fchownat(dir, name, (uid_t)op->c, (gid_t)op->d, AT_SYMLINK_NOFOLLOW);
            if (rc == 0) rc = fchmodat(dir, name, (mode_t)op->a & 07777, 0);
            int e = errno;
            close(dir);
            errno = e;
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
            int dir = open_parent_in_root(rootfd, op->path, name, sizeof name);
            if (dir < 0) { rc = -1; break; }
            rc = symlinkat(op->src, dir, name);
            if (rc < 0 && errno == EEXIST)
                rc = 0;
            int e = errno;
            close(dir);
            errno = e;
            break;
        }
        case RC_OP_PIVOT:
            rc = pivot(op->path ? op->path : rootfs, (int)op->flags);
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
        case RC_OP_LOOPBACK_UP: rc = loopback_up(); break;
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
            rc_exec_trampoline(plan, i, sync_fd);
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

/* ---- the parent's side -------------------------------------------------------------- */

struct rc_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

/* An fd of a new user namespace with these uid_map/gid_map lines (for MOUNT_ATTR_IDMAP):
 * a child is cloned into it, given the maps, and its namespace opened; the child is gone
 * on return. Returns the fd (close-on-exec) or -errno. */
static int rc_userns_fd(const char *uid_map, const char *gid_map)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    /* fork-like (no CLONE_VM): the child only waits for the pipe to close */
    pid_t pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    if (pid == 0) {
        char c;
        close(p[1]);
        while (read(p[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close(p[0]);
    char path[64];
    int rc = 0, fd = -1;
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    if (write_file(-1, path, uid_map) < 0)
        rc = -errno;
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    if (rc == 0 && write_file(-1, path, gid_map) < 0)
        rc = -errno;
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    if (rc == 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        rc = -errno;
    close(p[1]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return rc < 0 ? rc : fd;
}

int rc_idmapped_mount(int pid, const char *src, const char *uid_map, const char *gid_map,
                      int rec, int ridmap, int target)
{
    /* no maps: a plain bind, made here because the source is out of the reach of the
     * container's user namespace (a directory only the host's root may enter) */
    int userns = -1;
    if (uid_map && *uid_map && (userns = rc_userns_fd(uid_map, gid_map)) < 0)
        return userns;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
    int mntns = open(path, O_RDONLY | O_CLOEXEC);
    int p[2] = { -1, -1 };
    if (mntns < 0 || pipe2(p, O_CLOEXEC) < 0) {
        int e = errno;
        if (userns >= 0)
            close(userns);
        if (mntns >= 0)
            close(mntns);
        return -e;
    }
    /* fork-like (no CLONE_VM, no CLONE_FS): a process of its own may change its mount
     * namespace, and the kernel attaches a detached tree only in the namespace it was
     * made in */
    pid_t h = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (h == 0) {
        int err = 0, tree = -1;
        if (setns(mntns, CLONE_NEWNS) < 0)
            err = errno;
        if (!err && (tree = syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE |
                                    OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0))) < 0)
            err = errno;
        struct rc_mount_attr attr = { RC_MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns };
        if (!err && userns >= 0 &&
            syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (ridmap ? AT_RECURSIVE : 0),
                    &attr, sizeof attr) < 0)
            err = errno;
        if (!err && syscall(SYS_move_mount, tree, "", target, "",
                            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            err = errno;
        if (write(p[1], &err, sizeof err) < 0)
            _exit(1);
        _exit(0);
    }
    int err = h < 0 ? errno : 0;
    close(p[1]);
    if (h > 0) {
        ssize_t n;
        do n = read(p[0], &err, sizeof err); while (n < 0 && errno == EINTR);
        if (n != sizeof err)
            err = EIO;
        while (waitpid(h, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    close(p[0]);
    close(mntns);
    if (userns >= 0)
        close(userns);
    return -err;
}

#if defined(__x86_64__)
/* clone3 with a stack of its own for the child, which calls fn(arg) there and never returns
 * (glibc has no public clone3 wrapper; a child on a new stack cannot return through C). */
long rc_clone3_on_stack(struct rc_clone_args *args, size_t size, void (*fn)(void *), void *arg)
    __attribute__((visibility("hidden")));
__asm__(".text\n"
        ".globl rc_clone3_on_stack\n"
        ".hidden rc_clone3_on_stack\n"
        ".type rc_clone3_on_stack,@function\n"
        "rc_clone3_on_stack:\n"
        "  mov %rcx, %r8\n"          /* arg: rcx does not survive syscall */
        "  mov %rdx, %r9\n"          /* fn */
        "  mov $435, %eax\n"         /* SYS_clone3 */
        "  syscall\n"
        "  test %rax, %rax\n"
        "  jz 1f\n"
        "  ret\n"
        "1:\n"
        "  xor %ebp, %ebp\n"
        "  mov %r8, %rdi\n"
        "  call *%r9\n"
        "  mov $60, %eax\n"          /* SYS_exit: fn does not return */
        "  xor %edi, %edi\n"
        "  syscall\n"
        "  hlt\n");

struct vfork_ctx {
    const struct rc_plan *plan;
    int sv[2];
};

static void vfork_child(void *p)
{
    struct vfork_ctx *c = p;
    close(c->sv[0]);
    sync_fd = c->sv[1];
    child_main(c->plan, 1);
}

/* The child shares the runner's memory and the runner's thread waits until it has exec'd
 * (or exited): nothing of the interpreter's memory is copied, at the clone or afterwards
 * (each page the interpreter writes while a forked child lives would be copied first).
 * Only for a plan that needs nothing from the parent before the execve. -errno, or -1000
 * when this clone is not possible (the caller forks as usual). */
static pid_t spawn_sharing_memory(const struct rc_plan *plan, struct rc_clone_args *args,
                                  int sv[2])
{
    size_t size = 1 << 20;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
                       MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -1000;
    struct vfork_ctx ctx = { plan, { sv[0], sv[1] } };
    args->flags |= CLONE_VM | CLONE_VFORK;
    args->stack = (uint64_t)(uintptr_t)stack;
    args->stack_size = size;
    long pid = rc_clone3_on_stack(args, sizeof *args, vfork_child, &ctx);
    /* here the child has exec'd or exited: its stack is free */
    munmap(stack, size);
    args->flags &= ~(uint64_t)(CLONE_VM | CLONE_VFORK);
    args->stack = args->stack_size = 0;
    if (pid == -ENOSYS || pid == -E2BIG || pid == -EINVAL)
        return -1000;
    return (pid_t)pid;
}
#endif

static int netns_child(void *arg)
{
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    *(int *)arg = fd < 0 ? -errno : fd;
    return 0;
}

int rc_netns_new(void)
{
    /* CLONE_VFORK: this thread waits on the stack the child runs on; CLONE_FILES: the fd
     * the child opens is ours; exit signal 0: no SIGCHLD, and no waitpid(-1) of the
     * program can reap it (only __WALL) */
    char stack[16384] __attribute__((aligned(16)));
    int out = -EINVAL;
    /* no signal handler of the program may run on the child's borrowed stack (a Ctrl-C
     * reaches the whole process group): the child starts with everything blocked */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(netns_child, stack + sizeof stack,
                      CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_NEWNET, &out);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return -e;
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
    return out;
}

int rc_spawn(const struct rc_plan *plan, int *sock)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* Namespaces are created by clone itself unless one has to be joined first: joining
     * needs the host's privileges, which a new user namespace would already have dropped. */
    int in_clone = plan->njoins == 0;
    /* the cgroup namespace is made later, once the child is in its cgroups */
    uint64_t flags = in_clone ? (uint64_t)(plan->clone_flags & ~CLONE_NEWCGROUP) : 0;
    struct rc_clone_args args = { 0 };
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    if (plan->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)plan->cgroup_fd;
    }
    pid_t pid = -1000;
#if defined(__x86_64__)
    if (plan->share_memory && in_clone) {
        pid = spawn_sharing_memory(plan, &args, sv);
        if (pid < 0 && pid != -1000) {
            close(sv[0]);
            close(sv[1]);
            return pid;
        }
    }
#endif
    if (pid == -1000)
        pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && (errno == ENOSYS || errno == E2BIG) && plan->cgroup_fd < 0)
        pid = syscall(SYS_clone, (unsigned long)flags | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return -e;
    }
    if (pid == 0) {
        close(sv[0]);
        sync_fd = sv[1];
        child_main(plan, in_clone);
    }
    close(sv[1]);
    *sock = sv[0];
    return pid;
}
