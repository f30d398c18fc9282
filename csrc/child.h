/* The child's side of the shim, split by concern: what each file gives the others.
 * Internal to libcontainer._shim (hidden: none of it is exported from the module; the
 * interface is shim.h). The child runs no Python and uses no heap (see shim.c). */
#ifndef RC_CHILD_H
#define RC_CHILD_H

/* (after shim.h, which has no include guard: cffi reads it too) */
#include <sys/types.h>

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

/* the new mount API (mount_setattr, open_tree, move_mount) where the headers lack it */
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

#pragma GCC visibility push(hidden)

/* thread-local: children cloned with CLONE_VM (share_memory) from several threads at once
 * each set the copy of the thread that cloned them (that thread waits, suspended) */
extern __thread int sync_fd;
/* the container's state JSON, sent by the parent with a go: the hooks' stdin */
extern char state_buf[65536];
extern size_t state_len;
/* fds of the namespaces to join (shim.c) */
extern int join_fds[32];

int open_in_root(int rootfd, const char *path, int flags);
int mkdir_in_root(int rootfd, const char *path, mode_t mode);
int open_parent_in_root(int rootfd, const char *path, char *name, size_t namesz);
/* the parent directory of the last MKNOD/SYMLINK op, kept for the next one in the same
 * directory (/dev's devices and links); dropped at any other op */
struct entry_dir { int fd; int reusable; char path[256]; };
int entry_parent(struct entry_dir *d, int rootfd, const char *path, char *name, size_t namesz);
void entry_parent_drop(struct entry_dir *d);
int mkfile_in_root(int rootfd, const char *path);
int chdir_in_root(int rootfd, const char *path);
void fdpath(char *buf, size_t sz, int fd);
unsigned long locked_flags(const char *target);
int remount(const char *target, unsigned long flags);
int mount_on(int fd, int dir, const char *src, const char *fstype, unsigned long flags,
             const void *data);
int remount_on(int fd, int dir, unsigned long flags);
unsigned long locked_flags_fd(int fd);
void cwd_reset(void);
int cwd_back(void);
void cwd_forget(void);
int do_mount(int rootfd, const struct rc_op *op, int index);
int do_mask(int rootfd, const char *path);
int do_readonly(int rootfd, const char *path);
int write_file(int rootfd, const char *path, const char *data);
int parent_propagation(const char *path, unsigned long flags);
int pivot(const char *rootfs, int use_move);
int id_setresuid(uid_t u);
int id_setresgid(gid_t g);
int drop_bounding(unsigned long long keep, int last_cap);
int set_caps(const struct rc_op *op, int last_cap);
int load_seccomp(const struct rc_op *op, int index);
int last_cap(void);
int console(int index, uid_t uid, gid_t gid, int no_dev_console);
int run_hook(const struct rc_op *op);
int exec_search(const struct rc_plan *plan);
void exec_check(const struct rc_plan *plan, int from);
__attribute__((noreturn)) void fail(int op, int err);
void wait_go(int op);
int send_fd(int fd, int op);
int loopback_up(void);
__attribute__((noreturn)) void child_main(const struct rc_plan *plan, int in_clone);

#pragma GCC visibility pop

#endif
