/* The execve at the end: the container's PATH search, and the early check that the
 * program exists and may be run (as runc does before `start`). */
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

/* execvpe() searches the caller's PATH; the container's PATH is in the plan. */
int exec_search(const struct rc_plan *plan)
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
void exec_check(const struct rc_plan *plan, int from)
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
