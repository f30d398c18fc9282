/* The shim's confinement steps that are not about the filesystem: personality, I/O
 * priority, scheduler, and the exec trampoline (see trampoline.c). Each does one syscall
 * with values Python already decided. */
#ifndef RC_SECURITY_H
#define RC_SECURITY_H
/* include shim.h first (it has no include guard: cffi reads it as a cdef) */

/* RC_OP_PERSONALITY, RC_OP_IOPRIO, RC_OP_SCHED; -1 with errno on failure (EINVAL for
 * another kind). */
int rc_security_op(const struct rc_op *op);

/* RC_OP_TRAMPOLINE (op `index`): the sealed copy of the trampoline, made before any
 * seccomp filter is loaded; -1 with errno. rc_trampoline_reset at the child's start;
 * rc_trampoline_op: the index of the op that made it (-1: none). */
int rc_trampoline_make(const struct rc_plan *plan, int index);
void rc_trampoline_reset(void);
int rc_trampoline_op(void);

/* exec the sealed trampoline (execveat, or execve of its /proc/self/fd link where a filter
 * refuses execveat), which execs plan->argv (`init`: becomes the init that forks it,
 * writing the command's wait status to `status_fd` if >= 0; see trampoline.c). Returns
 * 0 only where this build has no trampoline (the caller execs directly); -1 with errno
 * when it could not be used: the container must then not start (CVE-2019-5736). */
int rc_exec_trampoline(const struct rc_plan *plan, int index, int sync_fd, int init,
                       int status_fd);

/* 1 when the running kernel knows seccomp filter flag `flag` (parent side). */
int rc_seccomp_flag_supported(unsigned long flag);
#endif
