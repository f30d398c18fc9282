/* runner-monitor: one per running container of `runner daemon` (conmon's job, smaller).
 *
 * The container's init is this process's child (the spawner, libcontainer/engine/spawn.py,
 * created it and then exec'd this program), so this process outlives the daemon: it holds
 * the container's stdio, writes the json-file log (with rotation), serves attach clients on a
 * unix socket, and when the init exits records the exit code and FinishedAt in exit.json.
 * The daemon finds all of that in DIR after a restart.
 *
 * usage: runner-monitor DIR PID OUT_FD ERR_FD IN_FD TTY MAX_SIZE MAX_FILE LISTEN_FD HOLD
 *   OUT_FD/ERR_FD: read ends of the container's stdout/stderr (-1: none; with TTY=1, OUT_FD
 *   is the pty master and IN_FD the same fd); IN_FD: write end of its stdin (-1: none);
 *   MAX_SIZE bytes per log file (0: no rotation), MAX_FILE files kept; LISTEN_FD: the
 *   listening attach socket; HOLD=1: read no output until a client sends RELEASE (so an
 *   attach made before start misses nothing).
 *
 * Attach protocol, both ways frames of an 8-byte header [type, 0, 0, 0, len (big endian
 * u32)] and len bytes. Monitor → client: type 1 stdout, 2 stderr (Docker's multiplexed
 * stream format, passed through as is). Client → monitor: 0 stdin data, 1 close stdin,
 * 2 resize (rows u16 BE, cols u16 BE), 3 release (see HOLD).
 *
 * Memory: static buffers only, no allocation after start (a thousand of these must be cheap). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define CHUNK 16384

static const char *dir;
static int logfd = -1;
static long long log_size, max_size;
static int max_file = 1;
static char logpath[4096];

struct client { int fd; unsigned char hdr[8]; int got; uint32_t need; int in_payload; };
static struct client clients[MAX_CLIENTS];

static void now_rfc3339(char *buf, size_t n) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%09ldZ", ts.tv_nsec);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void open_log(void) {
    logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    struct stat st;
    log_size = (logfd >= 0 && fstat(logfd, &st) == 0) ? st.st_size : 0;
}

/* json.log → json.log.1 → … → json.log.(MAX_FILE-1); the oldest goes (docker's scheme) */
static void rotate(void) {
    char from[4200], to[4200];
    close(logfd);
    if (max_file <= 1) {
        unlink(logpath);
    } else {
        for (int i = max_file - 1; i >= 1; i--) {
            snprintf(to, sizeof to, "%s.%d", logpath, i);
            if (i == 1) snprintf(from, sizeof from, "%s", logpath);
            else snprintf(from, sizeof from, "%s.%d", logpath, i - 1);
            rename(from, to);
        }
    }
    open_log();
}

/* one json-file record: {"log":"…","stream":"stdout","time":"…"} */
static void log_line(const char *stream, const unsigned char *p, size_t n) {
    static char out[CHUNK * 6 + 256];
    char ts[64];
    size_t k = 0;
    k += (size_t)sprintf(out, "{\"log\":\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') { out[k++] = '\\'; out[k++] = (char)c; }
        else if (c == '\n') { out[k++] = '\\'; out[k++] = 'n'; }
        else if (c == '\r') { out[k++] = '\\'; out[k++] = 'r'; }
        else if (c == '\t') { out[k++] = '\\'; out[k++] = 't'; }
        else if (c < 0x20 || c == 0x7f) k += (size_t)sprintf(out + k, "\\u%04x", c);
        else out[k++] = (char)c;  /* UTF-8 bytes pass through; readers replace bad ones */
    }
    now_rfc3339(ts, sizeof ts);
    k += (size_t)sprintf(out + k, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream, ts);
    if (logfd < 0) return;
    if (max_size > 0 && log_size > 0 && log_size + (long long)k > max_size) rotate();
    if (write_all(logfd, out, k) == 0) log_size += (long long)k;
}

/* Partial lines wait in a buffer per stream, as docker's json-file does (16K at most). */
struct pending { unsigned char buf[CHUNK]; size_t n; };
static struct pending pend[3];

static void drop_client(int i) {
    close(clients[i].fd);
    clients[i].fd = -1;
}

static void to_clients(int stream, const unsigned char *p, size_t n) {
    unsigned char hdr[8] = {(unsigned char)stream, 0, 0, 0, (unsigned char)(n >> 24),
                            (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].fd < 0) continue;
        /* blocking sends: a client that stops reading is the daemon's relay, which reads */
        if (write_all(clients[i].fd, hdr, 8) < 0 || write_all(clients[i].fd, p, n) < 0)
            drop_client(i);
    }
}

static void output(int stream, const unsigned char *p, size_t n) {
    const char *name = stream == 2 ? "stderr" : "stdout";
    struct pending *pd = &pend[stream];
    to_clients(stream, p, n);
    for (size_t i = 0; i < n; i++) {
        pd->buf[pd->n++] = p[i];
        if (p[i] == '\n' || pd->n == sizeof pd->buf) {
            log_line(name, pd->buf, pd->n);
            pd->n = 0;
        }
    }
}

static void flush_pending(void) {
    for (int s = 1; s <= 2; s++)
        if (pend[s].n) {
            log_line(s == 2 ? "stderr" : "stdout", pend[s].buf, pend[s].n);
            pend[s].n = 0;
        }
}

/* read what is there; → 0 at EOF/EIO (the fd is done), 1 otherwise */
static int pump(int fd, int stream) {
    static unsigned char buf[CHUNK];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) { output(stream, buf, (size_t)r); continue; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return 1;
        return 0;
    }
}

static int in_fd = -1, out_fd = -1, err_fd = -1, tty, held;

static void client_frame(int i, int type, const unsigned char *p, uint32_t n) {
    (void)i;
    if (type == 0 && in_fd >= 0) {
        if (write_all(in_fd, p, n) < 0 && !tty) { close(in_fd); in_fd = -1; }
    } else if (type == 1 && in_fd >= 0 && !tty) {
        close(in_fd);
        in_fd = -1;
    } else if (type == 1 && tty && in_fd >= 0) {
        /* a tty's stdin closes with EOF (^D), as a terminal would send it */
        unsigned char eot = 4;
        write_all(in_fd, &eot, 1);
    } else if (type == 2 && n >= 4 && tty) {
        struct winsize ws = {0};
        ws.ws_row = (unsigned short)(p[0] << 8 | p[1]);
        ws.ws_col = (unsigned short)(p[2] << 8 | p[3]);
        ioctl(out_fd, TIOCSWINSZ, &ws);
    } else if (type == 3) {
        held = 0;
    }
}

static void client_read(int i) {
    static unsigned char buf[CHUNK];
    struct client *c = &clients[i];
    if (!c->in_payload) {
        ssize_t r = read(c->fd, c->hdr + c->got, 8 - (size_t)c->got);
        if (r <= 0) { if (r < 0 && errno == EAGAIN) return; drop_client(i); return; }
        c->got += (int)r;
        if (c->got < 8) return;
        c->need = (uint32_t)c->hdr[4] << 24 | (uint32_t)c->hdr[5] << 16 | (uint32_t)c->hdr[6] << 8 | c->hdr[7];
        c->got = 0;
        if (c->need == 0) { client_frame(i, c->hdr[0], buf, 0); return; }
        c->in_payload = 1;
        return;
    }
    size_t want = c->need > sizeof buf ? sizeof buf : c->need;
    ssize_t r = read(c->fd, buf, want);
    if (r <= 0) { if (r < 0 && errno == EAGAIN) return; drop_client(i); return; }
    if (c->hdr[0] == 2 && (size_t)r < c->need) {  /* resize: small, read it whole */
        ssize_t more = recv(c->fd, buf + r, c->need - (size_t)r, MSG_WAITALL);
        if (more > 0) r += more;
    }
    client_frame(i, c->hdr[0], buf, (uint32_t)r);
    c->need -= (uint32_t)r;
    if (c->need == 0) c->in_payload = 0;
}

static void write_exit(int status) {
    char ts[64], tmp[4200], path[4200], body[256];
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    now_rfc3339(ts, sizeof ts);
    int n = snprintf(body, sizeof body, "{\"ExitCode\":%d,\"FinishedAt\":\"%s\",\"Signal\":%d}\n",
                     code, ts, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    snprintf(tmp, sizeof tmp, "%s/exit.json.tmp", dir);
    snprintf(path, sizeof path, "%s/exit.json", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    write_all(fd, body, (size_t)n);
    fsync(fd);
    close(fd);
    rename(tmp, path);
}

int main(int argc, char **argv) {
    if (argc != 11) {
        fprintf(stderr, "usage: runner-monitor DIR PID OUT ERR IN TTY MAX_SIZE MAX_FILE LISTEN HOLD\n");
        return 2;
    }
    dir = argv[1];
    pid_t pid = (pid_t)atoi(argv[2]);
    out_fd = atoi(argv[3]);
    err_fd = atoi(argv[4]);
    in_fd = atoi(argv[5]);
    tty = atoi(argv[6]);
    max_size = atoll(argv[7]);
    max_file = atoi(argv[8]);
    int lfd = atoi(argv[9]);
    held = atoi(argv[10]);
    if (max_file < 1) max_file = 1;
    snprintf(logpath, sizeof logpath, "%s/json.log", dir);
    open_log();
    for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
    signal(SIGPIPE, SIG_IGN);
    /* the daemon's signals are not ours: a Ctrl-C at its terminal must not end this */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (out_fd >= 0) fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
    if (err_fd >= 0 && err_fd != out_fd) fcntl(err_fd, F_SETFL, fcntl(err_fd, F_GETFL) | O_NONBLOCK);
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    int exited = 0, status = 0;
    /* a SIGCHLD that came before the mask (the init may exit during the exec) is lost:
     * look once now */
    {
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
            if (w == pid) { exited = 1; status = st; }
    }
    int out_open = out_fd >= 0, err_open = err_fd >= 0 && err_fd != out_fd;
    /* a hold never outlasts 10 s: a daemon that died between spawn and release loses nothing
     * but a wait */
    time_t hold_until = time(NULL) + 10;
    for (;;) {
        struct pollfd p[4 + MAX_CLIENTS];
        int n = 0, ci[MAX_CLIENTS];
        p[n++] = (struct pollfd){sfd, POLLIN, 0};
        p[n++] = (struct pollfd){lfd, POLLIN, 0};
        int o = -1, e = -1;
        if (!held && out_open) { o = n; p[n++] = (struct pollfd){out_fd, POLLIN, 0}; }
        if (!held && err_open) { e = n; p[n++] = (struct pollfd){err_fd, POLLIN, 0}; }
        int first = n;
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (clients[i].fd >= 0) { ci[n - first] = i; p[n++] = (struct pollfd){clients[i].fd, POLLIN, 0}; }
        if (held && time(NULL) >= hold_until) held = 0;
        int timeout = held ? 200 : (exited ? 0 : -1);
        int r = poll(p, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR) break;
        if (r > 0 && (p[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGTERM) kill(pid, SIGKILL);  /* only the daemon's rm -f */
            }
            int st;
            pid_t w;
            while ((w = waitpid(-1, &st, WNOHANG)) > 0)
                if (w == pid) { exited = 1; status = st; }
        }
        if (r > 0 && (p[1].revents & POLLIN)) {
            int c;
            while ((c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS; i++) if (clients[i].fd < 0) { slot = i; break; }
                if (slot < 0) { close(c); continue; }
                clients[slot] = (struct client){c, {0}, 0, 0, 0};
            }
        }
        if (o >= 0 && p[o].revents) out_open = pump(out_fd, 1);
        if (e >= 0 && p[e].revents) err_open = pump(err_fd, 2);
        for (int k = first; k < n; k++)
            if (p[k].revents) client_read(ci[k - first]);
        if (exited && !held) {
            /* the init is gone (and with it the pid namespace): what is left in the pipes is
             * the last output; a pipe another process holds open is not waited for */
            if (out_open) pump(out_fd, 1);
            if (err_open) pump(err_fd, 2);
            flush_pending();
            write_exit(status);
            break;
        }
    }
    for (int i = 0; i < MAX_CLIENTS; i++) if (clients[i].fd >= 0) close(clients[i].fd);
    return 0;
}
