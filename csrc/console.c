/* The container's console: a pty whose slave becomes /dev/console and fds 0-2. */
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

int console(int index, uid_t uid, gid_t gid, int no_dev_console)
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
