/* Hostile programs for the sandbox tests (tests/integration/test_sandbox_hostile.py):
   each mode does one thing untrusted code might try and prints what the kernel said. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

static const char *err(long r) { return r < 0 ? strerrorname_np(errno) : "OK"; }

static void *spin(void *a) { (void)a; for (volatile unsigned long i = 0;; i++) ; return 0; }

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "ptrace")) {
        pid_t pid = argc > 2 ? atoi(argv[2]) : 1;
        printf("attach %d: %s\n", pid, err(ptrace(PTRACE_ATTACH, pid, 0, 0)));
        pid_t c = fork();
        if (c == 0) { pause(); _exit(0); }
        long r = ptrace(PTRACE_ATTACH, c, 0, 0);
        printf("attach own child: %s\n", err(r));
        kill(c, 9);
        return 0;
    }
    if (!strcmp(m, "mount")) {
        printf("mount: %s\n", err(mount("none", "/tmp", "tmpfs", 0, 0)));
        printf("remount /: %s\n", err(mount(0, "/", 0, MS_REMOUNT | MS_BIND, 0)));
        return 0;
    }
    if (!strcmp(m, "keyctl")) {
        printf("keyctl: %s\n", err(syscall(SYS_keyctl, 0 /*GET_KEYRING_ID*/, -3, 0)));
        printf("add_key: %s\n", err(syscall(SYS_add_key, "user", "k", "v", 1, -3)));
        return 0;
    }
    if (!strcmp(m, "unshare")) {
        printf("unshare user: %s\n", err(unshare(CLONE_NEWUSER)));
        printf("unshare mount: %s\n", err(unshare(CLONE_NEWNS)));
        printf("unshare net: %s\n", err(unshare(CLONE_NEWNET)));
        return 0;
    }
    if (!strcmp(m, "rawsock")) {
        printf("raw inet: %s\n", err(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)));
        printf("packet: %s\n", err(socket(AF_PACKET, SOCK_RAW, 0)));
        return 0;
    }
    if (!strcmp(m, "segv")) { volatile int *p = 0; return *p; }
    if (!strcmp(m, "abort")) abort();
    if (!strcmp(m, "raise")) {  /* a signal to itself, default action */
        raise(argc > 2 ? atoi(argv[2]) : SIGSEGV);
        puts("survived");
        return 0;
    }
    if (!strcmp(m, "killpg")) {  /* SIGKILL to its own process group */
        kill(0, SIGKILL);
        puts("survived");
        return 0;
    }
    if (!strcmp(m, "zombies")) {
        /* orphans: each child forks a grandchild and exits; the grandchildren, reparented
         * to pid 1, exit a moment later; who reaps them? */
        int n = argc > 2 ? atoi(argv[2]) : 10, z = 0;
        for (int i = 0; i < n; i++) {
            pid_t c = fork();
            if (c == 0) {
                if (fork() == 0) { usleep(20000); _exit(0); }
                _exit(0);
            }
            waitpid(c, 0, 0);
        }
        usleep(400000);
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char path[300], buf[512];
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
            FILE *f = fopen(path, "r");
            if (!f) continue;
            if (fgets(buf, sizeof buf, f)) {
                char *r = strrchr(buf, ')');
                if (r && r[1] == ' ' && r[2] == 'Z') z++;
            }
            fclose(f);
        }
        printf("zombies %d\n", z);
        return 0;
    }
    if (!strcmp(m, "spin")) spin(0);
    if (!strcmp(m, "threads")) {
        int n = argc > 2 ? atoi(argv[2]) : 2;
        pthread_t t;
        for (int i = 1; i < n; i++) pthread_create(&t, 0, spin, 0);
        spin(0);
    }
    if (!strcmp(m, "membomb")) {
        for (;;) {
            char *p = malloc(1 << 20);
            if (!p) { puts("malloc failed"); return 3; }
            memset(p, 1, 1 << 20);
        }
    }
    if (!strcmp(m, "forkbomb")) {
        for (;;) fork();
    }
    if (!strcmp(m, "daemon")) {
        /* a double fork into a new session, then the main process exits at once */
        pid_t c = fork();
        if (c == 0) {
            setsid();
            if (fork() == 0) { for (;;) sleep(100); }
            _exit(0);
        }
        waitpid(c, 0, 0);
        puts("left a daemon");
        return 0;
    }
    if (!strcmp(m, "files")) {
        int n = argc > 2 ? atoi(argv[2]) : 10000, made = 0;
        char name[64];
        for (int i = 0; i < n; i++) {
            snprintf(name, sizeof name, "f%d", i);
            int fd = open(name, O_CREAT | O_WRONLY, 0644);
            if (fd < 0) break;
            close(fd);
            made++;
        }
        printf("made %d\n", made);
        return made == n ? 0 : 1;
    }
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
