/* The shim's interface. This file is read twice: by the C compiler and by cffi's cdef,
 * so it holds only plain declarations (no macros, no includes). */

/* What one step of the child's plan does. The numbers are shared with plan.py (OpKind). */
enum rc_op_kind {
    RC_OP_MOUNT = 1,      /* mount src on path (in root); flags, data, fstype; then propagation, attrs;
                             d: tmpcopyup (copy what path held into the new tmpfs);
                             e: bind made by the parent (plan idmaps index + 1: id-mapped, or
                             a plain bind in a user namespace): the target goes to the
                             parent as a MSG_FD, which mounts it (rc_idmapped_mount) */
    RC_OP_MKDIR = 2,      /* mkdir -p path (in root), mode a */
    RC_OP_MKNOD = 3,      /* mknod path mode a dev b, chown to uid c / gid d */
    RC_OP_SYMLINK = 4,    /* symlink src -> path (in root) */
    RC_OP_PIVOT = 5,      /* pivot_root into the rootfs (flags 1: MS_MOVE + chroot instead;
                             2: chroot only, into path if set: no mount namespace) */
    RC_OP_MASK = 6,       /* hide path: /dev/null over a file, read-only tmpfs over a dir */
    RC_OP_READONLY = 7,   /* bind path on itself read-only */
    RC_OP_WRITE = 8,      /* write data to the file at path (sysctl, oom_score_adj); flags
                             RC_WRITE_EARLY, as one of the leading ops: before anything else */
    RC_OP_SETHOSTNAME = 9,
    RC_OP_SETDOMAINNAME = 10,
    RC_OP_RLIMIT = 11,    /* resource a: soft b, hard c */
    RC_OP_LOOPBACK_UP = 12,
    RC_OP_ROOT_PROPAGATION = 13,  /* mount(NULL, "/", flags) (unless 0) before anything is
                                     mounted; then the rootfs is bound on itself */
    RC_OP_ROOT_READONLY = 14,
    RC_OP_CHDIR = 15,     /* chdir to path (in root); a=1: a try, refusal deferred; a=2: retry it */
    RC_OP_USER = 16,      /* setgroups(gids), setresgid(b), setresuid(a), keeping caps */
    RC_OP_CAPS = 17,      /* effective b, permitted c, inheritable d, ambient e masks */
    RC_OP_NO_NEW_PRIVS = 18,
    RC_OP_UMASK = 19,
    RC_OP_SECCOMP = 20,   /* load the BPF program in data/len; flags; a=1: send listener fd */
    RC_OP_WAIT_START = 21,/* block until `start` opens the exec fifo (fd a) */
    RC_OP_EXEC = 22,      /* a=1: through the init (trampoline.c), which writes the command's
                             wait status to fd b - 1 if b > 0 */
    RC_OP_BIND_DEV = 23,  /* create an empty file at path and bind the host device src on it */
    RC_OP_MKFILE = 24,    /* create an empty regular file at path (in root) */
    RC_OP_SETSID = 25,
    RC_OP_CONSOLE = 26,   /* open a pty, send the master to the parent, make the slave stdio */
    RC_OP_BOUNDING = 27,  /* drop every capability not in mask a from the bounding set */
    RC_OP_SYNC = 28,      /* tell the parent (MSG_SYNC) and wait for its go: createRuntime hooks */
    RC_OP_HOOK = 29,      /* run hook `path`: data = a args then b env, NUL-separated; timeout c s;
                             stdin = the state JSON the parent sent with its last go */
    RC_OP_KEYRING = 30,   /* join a new session keyring named data */
    RC_OP_PERSONALITY = 31,  /* personality(a) */
    RC_OP_IOPRIO = 32,    /* ioprio_set(IOPRIO_WHO_PROCESS, 0, a) */
    RC_OP_SCHED = 33,     /* sched_setattr(0, data = struct sched_attr, 0) */
    RC_OP_MEMPOLICY = 34, /* set_mempolicy(a = mode | flags, data = nodemask (NULL: none), b = maxnode) */
    RC_OP_AFFINITY = 35,  /* sched_setaffinity(0, len, data = cpu mask); as ops[0] it runs first of
                             all, before the namespaces are set up (execCPUAffinity.initial) */
    RC_OP_TRAMPOLINE = 36,/* make the sealed exec trampoline (before any seccomp filter) */
};

#define RC_WRITE_EARLY 1

struct rc_op {
    int kind;
    const char *path;
    const char *src;
    const char *fstype;
    const char *data;
    unsigned long flags;
    unsigned long pflags;      /* propagation flags applied after a mount */
    unsigned long long a, b, c, d, e;
    int len;
};

struct rc_ns_join {
    int nstype;                /* CLONE_NEW* of the namespace */
    const char *path;
};

struct rc_plan {
    /* namespaces */
    int clone_flags;           /* new namespaces (CLONE_NEW*) except time */
    int new_timens;
    const char *time_offsets;  /* written to /proc/self/timens_offsets */
    struct rc_ns_join *joins;  /* the user namespace first */
    int njoins;
    int cgroup_fd;             /* >= 0: clone3 CLONE_INTO_CGROUP */
    const char *const *cgroup_files; /* the child writes "0" to each (v1 tasks files) */
    int ncgroup_files;
    /* what the child does, in order */
    struct rc_op *ops;
    int nops;
    /* the process */
    const char *const *argv;
    const char *const *envp;
    const char *path_env;      /* PATH for the executable search, may be NULL */
    const unsigned int *gids;  /* supplementary groups */
    int ngids;
    int keep_fds;              /* fds 3 .. 3+keep_fds-1 survive execve */
    const int *stdio;          /* 3 fds dup'ed to 0, 1, 2 first; -1 keeps the runner's */
    int share_memory;          /* 1: the parent has nothing to do before the execve (no go):
                                  clone with CLONE_VM|CLONE_VFORK (see rc_spawn) */
    int netns_fd;              /* >= 0: enter this new network namespace (made ahead by
                                  rc_netns_new) instead of CLONE_NEWNET */
};

/* Messages on the sync socket, child -> parent. */
struct rc_msg {
    int type;                  /* 1 userns ready, 2 waiting for go, 3 error, 4 fd attached,
                                  5 created (blocked on the exec fifo), 6 forked init (pid),
                                  7 sync point reached (waiting for go) */
    int op;                    /* index of the failing op, -1 for the namespace stage */
    int err;                   /* errno */
    int pid;
};

/* Clone the child that runs `plan`. Returns its pid (or -errno); *sock gets the parent's
 * end of the sync socket. The child waits for the parent's "go" before running its ops. */
int rc_spawn(const struct rc_plan *plan, int *sock);

/* One message from the child on the parent's end of the sync socket, waiting up to
 * timeout_ms for it: its length (0: the child's end closed, at its execve), -ETIMEDOUT, or
 * -errno (-EINTR: the caller runs its signal handlers and asks again). *fd gets the fd it
 * carried (SCM_RIGHTS), else -1. Here rather than through Python's socket module, which a
 * `runner run` would load for this alone: 0.12 MiB of its peak RSS (tests/bench/rss_floor.py). */
int rc_recv(int sock, void *buf, int size, int timeout_ms, int *fd);

/* A new network namespace, owned by this process's user namespace, with its loopback
 * device up, as an fd (or -errno): made by a short-lived child that shares this process's
 * fd table, so that the calling thread's own namespaces never change. */
int rc_netns_new(void);

/* Bind src on the (O_PATH) fd target, which the child of `pid` sent, with its ids mapped
 * through a user namespace of these maps (on every mount below too with ridmap): a helper
 * joins pid's mount namespace, in the host's user namespace (the kernel wants
 * CAP_SYS_ADMIN over the source's filesystem, which a container's user namespace never
 * has), makes the id-mapped copy there and attaches it. Returns 0 or -errno. With an
 * empty uid_map, a plain bind: the host's root reaches sources that the container's user
 * namespace cannot (under a mode-700 directory), as runc's mount sources opened by the
 * parent do. */
int rc_idmapped_mount(int pid, const char *src, const char *uid_map, const char *gid_map,
                      int rec, int ridmap, int target);
