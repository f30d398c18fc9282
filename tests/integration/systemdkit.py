"""A real systemd for --systemd-cgroup tests on a host without one: systemd 252 (Debian
bookworm) as PID 1 of a container the runner runs, with its own cgroup namespace.

The rootfs is made by debootstrap once (cached outside the repo, under a lock, so
concurrent makers wait and reuse it) from the mirror the host's apt sources name; callers
skip, saying why, when that fails. Each Systemd gets an overlay on it (its own /etc, /var)
and the binds a test needs (the repo, its venv's interpreter's paths, the host's runc).

NEVER without the cgroup namespace: systemd would remount the host's cgroup2 with
nsdelegate, a host-wide change.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))
from grading_image import mirror  # noqa: E402

CACHE = os.environ.get("RUNNER_TEST_CACHE", "/var/cache/runner-tests")
# python3: the runner runs inside; podman: driving the runner with --cgroup-manager systemd
# (podman's network stack, which apt resolves and debootstrap does not: the CNI plugins);
# dbus-user-session, libpam-systemd: a user's `systemd --user` with its session bus
# (rootless --systemd-cgroup)
PACKAGES = ("systemd,systemd-sysv,dbus,libseccomp2,python3,podman,containernetworking-plugins,"
            "iptables,dbus-user-session,libpam-systemd")
# named for its package list: a list that changes makes (and uses) a rootfs of its own
ROOTFS = os.path.join(CACHE, "debian-systemd-"
                      + hashlib.sha256(PACKAGES.encode()).hexdigest()[:12])
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


STAMP = ".runner-packages"  # written last: the rootfs is whole, with these packages


def ready(path: str = ROOTFS) -> bool:
    try:
        with open(os.path.join(path, STAMP)) as f:
            return f.read() == PACKAGES
    except OSError:
        return False


def ensure(path: str = ROOTFS) -> str:
    """The rootfs, made once. Raises RuntimeError saying why it cannot be made."""
    if ready(path):
        return path
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready(path):
            return path
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with open(path + ".log", "w") as log:
            r = subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}",
                                "bookworm", tmp, mirror()], stdout=log, stderr=log)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"debootstrap from {mirror()} failed (no mirror reachable?); "
                               f"see {path}.log")
        shutil.rmtree(os.path.join(tmp, "var/cache/apt/archives"), ignore_errors=True)
        with open(os.path.join(tmp, STAMP), "w") as f:
            f.write(PACKAGES)
        os.rename(tmp, path)
    return path


ALL_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
            "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
            "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
            "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]  # all but CAP_SYS_RESOURCE


def _bind(src: str, dst: str | None = None, ro: bool = True) -> dict:
    return {"destination": dst or src, "type": "bind", "source": src,
            "options": ["rbind", "ro" if ro else "rw"]}


def config(rootfs: str, binds: list, unified: bool = False) -> dict:
    caps = ALL_CAPS
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0},
                    "args": ["/sbin/init"],
                    "env": ["container=oci", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                    "cwd": "/",
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                    "noNewPrivileges": False},
        "root": {"path": rootfs, "readonly": False},
        "hostname": "sd",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            # `unified`: cgroup2 alone (systemd runs in unified mode, with the controllers
            # this host's cgroup2 has); else the host's hybrid layout
            {"destination": "/sys/fs/cgroup", "type": "cgroup2" if unified else "cgroup",
             "source": "cgroup2" if unified else "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "rw"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=755"]},
            {"destination": "/run/lock", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "noexec"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev"]},
        ] + binds,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "mount", "uts", "ipc", "network",
                                                 "cgroup")],
            "resources": {"devices": [{"allow": True, "access": "rwm"}]},
            "maskedPaths": [], "readonlyPaths": [],
        },
    }


class Systemd:
    """A running systemd container (context manager): `sh(cmd)` runs a shell command in
    it through the runner's exec (stdio redirected inside), `stop()` shuts it down."""

    def __init__(self, runner: list, workdir: str, name: str, binds=(), unified: bool = False):
        self.runner, self.workdir, self.id = runner, workdir, name
        self.unified = unified
        self.root = os.path.join(workdir, "state")
        self.bundle = os.path.join(workdir, "bundle")
        self.binds = list(binds)
        self.mounted = ""

    def __enter__(self):
        lower = ensure()
        upper, work, merged = (os.path.join(self.workdir, d) for d in ("upper", "work",
                                                                         "merged"))
        for d in (upper, work, merged, self.bundle):
            os.makedirs(d, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={upper},workdir={work}", merged],
                       check=True)
        self.mounted = merged
        try:
            for b in self.binds:  # mount points the overlay lacks
                dst = os.path.join(merged, b["destination"].lstrip("/"))
                if os.path.isdir(b["source"]):
                    os.makedirs(dst, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    if not os.path.exists(dst):
                        open(dst, "w").close()
            with open(os.path.join(self.bundle, "config.json"), "w") as f:
                json.dump(config(merged, self.binds, self.unified), f)
            r = subprocess.run(self.runner + ["--root", self.root, "run", "-d", "--bundle",
                                              self.bundle, self.id],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"the runner could not run systemd: {r.stderr}")
            self.wait_running()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def sh(self, cmd: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run `sh -c cmd` inside through the runner's exec. The command's stdio are files
        inside (a daemon it leaves, a detached container, must not hold the exec's pipes),
        printed once it is done."""
        wrapped = (f"({cmd}) >/tmp/.out 2>/tmp/.err </dev/null; rc=$?; cat /tmp/.out; "
                   "cat /tmp/.err >&2; exit $rc")
        r = subprocess.run(self.runner + ["--root", self.root, "exec", self.id, "sh", "-c",
                                          wrapped],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd!r} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def wait_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            r = subprocess.run(self.runner + ["--root", self.root, "exec", self.id,
                                              "systemctl", "is-system-running"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=30)
            last = r.stdout.strip()
            if last in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"systemd did not come up: is-system-running says {last!r}")

    def stop(self) -> None:
        if os.path.isdir(os.path.join(self.root, self.id)):
            subprocess.run(self.runner + ["--root", self.root, "kill", self.id, "SIGRTMIN+3"],
                           capture_output=True, timeout=30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                r = subprocess.run(self.runner + ["--root", self.root, "state", self.id],
                                   capture_output=True, text=True, timeout=30)
                if '"stopped"' in r.stdout or r.returncode != 0:
                    break
                time.sleep(0.2)
            subprocess.run(self.runner + ["--root", self.root, "delete", "--force", self.id],
                           capture_output=True, timeout=60)
        if self.mounted:
            subprocess.run(["umount", "-l", self.mounted], capture_output=True)
            self.mounted = ""


def user_session(box: Systemd, uid: int, name: str) -> str:
    """A user with lingering on (unified mode): its user@UID.service runs `systemd --user`
    on a delegated subtree, with a session bus at $XDG_RUNTIME_DIR/bus
    (dbus-user-session). → the prefix that runs a command as that user in its session's
    environment."""
    box.sh(f"useradd -m -u {uid} {name} && loginctl enable-linger {name} && "
           f"for i in $(seq 100); do test -S /run/user/{uid}/bus && "
           f"systemctl is-active -q user@{uid}.service && break; sleep 0.1; done; "
           f"test -S /run/user/{uid}/bus")
    return as_user(uid, name)


def as_user(uid: int, name: str) -> str:
    """The prefix that runs a command as the user, in its session's environment."""
    return (f"setpriv --reuid={uid} --regid={uid} --init-groups env -i HOME=/home/{name} "
            f"PATH=/usr/bin:/bin XDG_RUNTIME_DIR=/run/user/{uid}")
