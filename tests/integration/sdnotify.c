/* A minimal sd_notify(3) sender for the busybox rootfs (which has no systemd-notify and no
 * unix-socket nc): each argument goes as one datagram to $NOTIFY_SOCKET (a path, or
 * "@name" for an abstract socket), as libsystemd sends it. With no socket it says so and
 * exits 2; a failed send exits 1. Built static by tests/integration/sdnotify_helper.py. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) {
        fprintf(stderr, "sdnotify: NOTIFY_SOCKET is not set\n");
        return 2;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof(sa.sun_path)) {
        fprintf(stderr, "sdnotify: NOTIFY_SOCKET is too long\n");
        return 2;
    }
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = 0;
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("sdnotify: socket");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (sendto(fd, argv[i], strlen(argv[i]), 0, (struct sockaddr *)&sa, len) < 0) {
            fprintf(stderr, "sdnotify: sendto %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    return 0;
}
