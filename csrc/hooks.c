/* The runtime's hooks run by the child (createContainer, startContainer): the state on
 * stdin, bounded in time. */
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

/* Run a hook with the state on stdin, as the spec says; wait at most `timeout` seconds. */
int run_hook(const struct rc_op *op)
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
