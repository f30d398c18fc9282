/* The shim's confinement steps that are not about the filesystem: personality, I/O
 * priority, scheduler, and the exec trampoline (see trampoline.c). Each does one syscall
 * with values Python already decided. */
#ifndef RC_SECURITY_H
#define RC_SECURITY_H
/* include shim.h first (it has no include guard: cffi reads it as a cdef) */

/* RC_OP_PERSONALITY, RC_OP_IOPRIO, RC_OP_SCHED; -1 with errno on failure (EINVAL for
 * another kind). */
int rc_security_op(const struct rc_op *op);

/* execveat the sealed trampoline, which execs plan->argv (`init`: becomes the init that
 * forks it, writing the command's wait status to `status_fd` if >= 0; see trampoline.c).
 * Returns only if the trampoline could not be used (no memfd, execveat refused): the
 * caller then execs directly, or fails when an init was asked for. */
void rc_exec_trampoline(const struct rc_plan *plan, int index, int sync_fd, int init,
                        int status_fd);

/* 1 when the running kernel knows seccomp filter flag `flag` (parent side). */
int rc_seccomp_flag_supported(unsigned long flag);
#endif
