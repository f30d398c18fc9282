"""The seccomp profile `runner spec --seccomp default` writes: an allowlist in the manner of
the profile container engines (Docker, Podman) apply by default. Everything not listed
fails with EPERM — kernel keyrings (keyctl, add_key, request_key), bpf, kexec, modules,
open_by_handle_at, mount and the new mount API, namespaces (unshare, setns, clone with
CLONE_NEW*), reboot, swap, clock setting, perf, userfaultfd… A few of those come back when
the process's capabilities would allow them anyway (CAP_SYS_ADMIN, CAP_SYS_PTRACE, …)."""
from __future__ import annotations

import os

ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill
landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link
linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause
pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall
rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid
setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid
setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat
shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall
socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs
sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
process_vm_readv process_vm_writev ptrace
""".split()

# machine → (native and compat architectures, syscalls only that architecture has)
ARCHES = {
    "x86_64": (["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
               ["arch_prctl", "modify_ldt"]),
    "aarch64": (["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                 "cacheflush", "set_tls"]),
    "ppc64le": (["SCMP_ARCH_PPC64LE"], ["sync_file_range2", "swapcontext"]),
    "s390x": (["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
              ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]),
    "riscv64": (["SCMP_ARCH_RISCV64"], ["riscv_flush_icache"]),
}

# syscalls allowed only when the process holds the capability that guards them anyway
BY_CAPABILITY = {
    "CAP_SYS_ADMIN": ["bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
                      "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
                      "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
                      "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
                      "unshare"],
    "CAP_DAC_READ_SEARCH": ["open_by_handle_at"],
    "CAP_SYS_BOOT": ["reboot"],
    "CAP_SYS_CHROOT": ["chroot"],
    "CAP_SYS_MODULE": ["delete_module", "init_module", "finit_module"],
    "CAP_SYS_PACCT": ["acct"],
    "CAP_SYS_PTRACE": ["kcmp", "pidfd_getfd", "process_madvise"],
    "CAP_SYS_RAWIO": ["iopl", "ioperm"],
    "CAP_SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_settime64"],
    "CAP_SYS_TTY_CONFIG": ["vhangup"],
    "CAP_SYS_NICE": ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    "CAP_SYSLOG": ["syslog"],
    "CAP_BPF": ["bpf"],
    "CAP_PERFMON": ["perf_event_open"],
}

EPERM, ENOSYS = 1, 38
AF_VSOCK = 40
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # LINUX, LINUX32, UNAME26, query
CLONE_NEW_MASK = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def _rule(names, action="SCMP_ACT_ALLOW", **extra) -> dict:
    r = {"names": list(names), "action": action}
    r.update(extra)
    return r


def default_profile(capabilities=(), machine: str | None = None) -> dict:
    """The profile for a process whose bounding set is `capabilities`."""
    machine = machine or os.uname().machine
    archs, arch_calls = ARCHES.get(machine, ([], []))
    caps = set(capabilities)
    rules = [_rule(ALLOWED)]
    if arch_calls:
        rules.append(_rule(arch_calls))
    rules.append(_rule(["socket"], args=[{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]))
    for p in PERSONALITIES:
        rules.append(_rule(["personality"], args=[{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]))
    extra = sorted({n for cap, names in BY_CAPABILITY.items() if cap in caps for n in names})
    if extra:
        rules.append(_rule(extra))
    if "CAP_SYS_ADMIN" not in caps:
        # clone without the namespace flags; clone3's flags are out of BPF's reach, so it
        # reports ENOSYS and libc falls back to clone
        idx = 1 if machine.startswith("s390") else 0
        rules.append(_rule(["clone"], args=[{"index": idx, "value": CLONE_NEW_MASK,
                                             "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 0}]))
        rules.append(_rule(["clone3"], "SCMP_ACT_ERRNO", errnoRet=ENOSYS))
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM}
    if archs:
        profile["architectures"] = list(archs)
    profile["syscalls"] = rules
    return profile
