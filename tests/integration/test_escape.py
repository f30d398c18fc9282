"""Escape attempts from inside a container, each of which must fail. Every test names the
CVE or the class of bug it guards against; each is a real attempt made by a process in the
container (busybox, or the static `secprobe`), judged from inside and from the host."""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, make_reachable, new_id

import secprobe

HOST_PY = os.path.realpath(sys.executable)


def host_py_id() -> str:
    st = os.stat(HOST_PY)
    return f"{st.st_dev} {st.st_ino}"


def runner_with_leaked_fd(bundle, *args, leak: str = "/tmp", fd: int = 7):
    """Run `runner ARGS` holding an extra, inheritable directory fd `fd` on a host path that
    it was never asked to pass on: what a runtime's own leaked fd (runc's cgroup fd in
    CVE-2024-21626) looks like from the container."""
    d = os.open(leak, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return subprocess.run(RUNNER + ["--root", bundle.root] + list(args), close_fds=False,
                               preexec_fn=lambda: os.dup2(d, fd), capture_output=True,
                               text=True, timeout=60, cwd=REPO)
    finally:
        os.close(d)


# ---- CVE-2019-5736: overwriting the runtime through /proc/self/exe --------------------------

PY_SCRIPT = ("import os\n"
             "st = os.stat('/proc/self/exe')\n"
             "print('RAN', st.st_dev, st.st_ino)\n"
             "fd = os.open('/proc/self/exe', os.O_PATH)\n"
             "print('HANDLE', os.readlink('/proc/self/fd/%d' % fd))\n")


@pytest.fixture
def python_capable(bundle):
    """The rootfs gets what the host's python needs to run (its libraries, its stdlib
    bound read-only): if the container ever got to execute the runtime's interpreter, it
    would run and say so."""
    out = subprocess.run(["ldd", HOST_PY], capture_output=True, text=True).stdout
    for line in out.splitlines():
        path = next((w for w in line.split() if w.startswith("/")), None)
        if path:
            dest = bundle.rootfs + path
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(path, dest)
    stdlib = sysconfig.get_paths()["stdlib"]
    bundle.config["mounts"].append({"destination": stdlib, "type": "bind", "source": stdlib,
                                    "options": ["rbind", "ro"]})
    return bundle


def _entry(bundle, how: str) -> list:
    if how == "direct":
        return ["/proc/self/exe", "-S", "-c", PY_SCRIPT]
    if how == "symlink":
        os.symlink("/proc/self/exe", os.path.join(bundle.rootfs, "bin", "entry"))
        return ["/bin/entry", "-S", "-c", PY_SCRIPT]
    path = os.path.join(bundle.rootfs, "bin", "entry.py")
    with open(path, "w") as f:
        f.write("#!/proc/self/exe -S\n" + PY_SCRIPT)
    os.chmod(path, 0o755)
    return ["/bin/entry.py"]


@pytest.mark.parametrize("how", ["direct", "symlink", "shebang"])
def test_cve_2019_5736_entrypoint_resolving_to_proc_self_exe(python_capable, how):
    """CVE-2019-5736: an entrypoint that resolves to /proc/self/exe must not execute the
    runtime's own binary (here: the host's python) inside the container, where it could be
    opened and, once idle, overwritten."""
    r = python_capable.set_args(*_entry(python_capable, how)).run()
    assert "RAN" not in r.stdout, r.stdout
    assert host_py_id() not in r.stdout
    assert r.returncode != 0


@pytest.mark.parametrize("how", ["direct", "symlink", "shebang"])
def test_cve_2019_5736_exec_resolving_to_proc_self_exe(python_capable, how):
    """CVE-2019-5736, the `exec` way (the original exploit overwrote /bin/sh with
    `#!/proc/self/exe` and waited for `docker exec`)."""
    args = _entry(python_capable, how)
    cid = secprobe.start_detached(python_capable.set_args("sleep", "60"))
    try:
        r = python_capable.runner("exec", cid, *args)
        assert "RAN" not in r.stdout, r.stdout
        assert host_py_id() not in r.stdout
        assert r.returncode != 0
    finally:
        python_capable.runner("delete", "--force", cid)


def _refusing(bundle, *names: str) -> None:
    """A seccomp profile that allows everything but `names` (EPERM)."""
    bundle.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": list(names), "action": "SCMP_ACT_ERRNO"}]}


@pytest.mark.parametrize("refused", [("memfd_create",), ("execveat",), ("fcntl",)])
@pytest.mark.parametrize("how", ["symlink", "shebang"])
def test_cve_2019_5736_a_profile_refusing_the_trampoline_syscalls(python_capable, how, refused):
    """A seccomp profile that refuses memfd_create or execveat (hardened profiles refuse
    the first) must not switch the protection off: the sealed trampoline is made before the
    filter is loaded, and exec'd through its /proc/self/fd link where execveat is refused.
    (Before: the child fell back to exec'ing the command directly, and the host's python
    ran in the container with a handle on its own binary.)"""
    _refusing(python_capable, *refused)
    r = python_capable.set_args(*_entry(python_capable, how)).run()
    assert "RAN" not in r.stdout, r.stdout
    assert host_py_id() not in r.stdout
    assert r.returncode != 0


@pytest.mark.parametrize("refused", [("memfd_create",), ("execveat",)])
def test_a_profile_refusing_the_trampoline_syscalls_still_runs_the_process(bundle, refused):
    _refusing(bundle, *refused)
    r = bundle.sh("readlink /proc/self/exe; echo ran").run()
    assert r.returncode == 0 and r.stdout.splitlines() == ["/bin/busybox", "ran"], r


def test_no_way_to_the_trampoline_fails_the_container_closed(bundle):
    """execveat refused and no /proc to exec its link through: the container does not start
    (the direct exec would be CVE-2019-5736's way in), says why, and leaves nothing."""
    _refusing(bundle, "execveat")
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/proc"]
    bundle.linux.pop("maskedPaths", None)
    bundle.linux.pop("readonlyPaths", None)
    r = bundle.set_args("true").run()
    assert r.returncode != 0
    assert "sealed exec trampoline" in r.stderr and "CVE-2019-5736" in r.stderr, r.stderr
    assert_nothing_left(bundle)


def test_cve_2019_5736_runtime_process_is_out_of_reach(bundle):
    """CVE-2019-5736 via /proc/<pid>/exe: even sharing the host's pid namespace, the init
    cannot trace the runtime that started it, open its executable or read its memory."""
    secprobe.install(bundle)
    bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "pid"]
    r = bundle.set_args("secprobe", "parent").run()
    assert r.stdout == "ptrace EPERM\nexe EACCES\nmem EACCES\n", r.stderr


# ---- CVE-2024-21626: a leaked fd or cwd leading to the host ---------------------------------

def test_cve_2024_21626_no_fd_or_cwd_reaches_the_host(bundle):
    """CVE-2024-21626: list /proc/self/fd and walk `..` from the cwd and from every fd: none
    may reach the host's /, even when the runtime itself holds a stray host directory fd."""
    secprobe.install(bundle)
    bundle.set_args("sh", "-c", f"secprobe fds; secprobe walk {secprobe.host_root()}")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r = runner_with_leaked_fd(bundle, "run", "--bundle", bundle.path, cid)
    assert r.returncode == 0, r.stderr
    fds = [l.split()[1] for l in r.stdout.splitlines() if l.startswith("fd ")]
    assert fds == ["0", "1", "2"], r.stdout
    assert "ESCAPE" not in r.stdout
    assert "walked" in r.stdout


@pytest.mark.parametrize("fd", [3, 4, 5, 6, 7, 8, 9, 10])
def test_cve_2024_21626_cwd_through_proc_self_fd(bundle, fd):
    """CVE-2024-21626 itself: process.cwd = /proc/self/fd/N, N being an fd the runtime's
    child still holds while it sets up. Refused, or at least never a host directory."""
    secprobe.install(bundle)
    bundle.process["cwd"] = f"/proc/self/fd/{fd}"
    bundle.set_args("secprobe", "walk", *secprobe.host_root().split())
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r = runner_with_leaked_fd(bundle, "run", "--bundle", bundle.path, cid)
    assert "ESCAPE" not in r.stdout
    if r.returncode != 0:
        assert r.stderr.startswith("runner: process.cwd:"), r.stderr
    assert_nothing_left(bundle, cid)


def test_cve_2024_21626_exec_cwd_through_a_leaked_fd(bundle):
    """CVE-2024-21626, `exec --cwd /proc/self/fd/7` with fd 7 a host directory that the
    runtime holds: the cwd is resolved inside the container's root, so this is refused."""
    secprobe.install(bundle)
    cid = secprobe.start_detached(bundle.set_args("sleep", "60"))
    try:
        r = runner_with_leaked_fd(bundle, "exec", "--cwd", "/proc/self/fd/7", cid,
                                  "secprobe", "walk", *secprobe.host_root().split())
        assert "ESCAPE" not in r.stdout
        assert r.returncode == 1
        assert r.stderr.startswith("runner: process.cwd: chdir to /proc/self/fd/7:"), r.stderr
        # and an exec'd process holds nothing of the host either
        r = runner_with_leaked_fd(bundle, "exec", cid, "sh", "-c",
                                  f"secprobe fds; secprobe walk {secprobe.host_root()}")
        assert [l.split()[1] for l in r.stdout.splitlines() if l.startswith("fd ")] == ["0", "1", "2"]
        assert "ESCAPE" not in r.stdout and "walked" in r.stdout
    finally:
        bundle.runner("delete", "--force", cid)


def test_cve_2024_21626_sync_socket_never_leaks_even_when_seccomp_refuses_cloexec(bundle):
    """The runtime's sync socket crosses the exec trampoline without close-on-exec, and the
    trampoline sets it back; when a filter refuses exactly that fcntl, the socket is closed
    rather than handed to the container."""
    secprobe.install(bundle)
    bundle.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["fcntl"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 2, "op": "SCMP_CMP_EQ"},    # F_SETFD
                  {"index": 2, "value": 1, "op": "SCMP_CMP_EQ"}]}]}  # FD_CLOEXEC
    r = bundle.set_args("secprobe", "fds").run()
    assert r.returncode == 0, r.stderr
    assert [l.split()[1] for l in r.stdout.splitlines()] == ["0", "1", "2"], r.stdout


# ---- CVE-2021-30465, CVE-2025-31133/52565: symlinks in the rootfs redirecting mounts -------

def test_cve_2021_30465_mount_destination_symlink_stays_in_the_rootfs(bundle, tmp_path):
    """CVE-2021-30465: a rootfs symlink pointing at a host path must not take a mount out of
    the rootfs: it lands inside, and the host directory is untouched."""
    host = tmp_path / "host-target"
    host.mkdir()
    os.symlink(str(host), os.path.join(bundle.rootfs, "evil"))
    os.symlink("../../../../../../.." + str(host), os.path.join(bundle.rootfs, "evil2"))
    bundle.config["mounts"] += [
        {"destination": "/evil/m", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/evil2/n", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
    ]
    r = bundle.sh("touch /evil/m/x /evil2/n/y && echo wrote").run()
    assert r.stdout == "wrote\n", r.stderr  # the tmpfses exist (the rootfs itself is ro)
    assert os.listdir(host) == []
    with open("/proc/self/mountinfo") as f:
        assert str(host) not in f.read()
    # created inside the rootfs instead
    assert os.path.isdir(os.path.join(bundle.rootfs, str(host).lstrip("/"), "m"))


def test_cve_2025_proc_symlink_is_refused(bundle, tmp_path):
    """A rootfs whose /proc is a symlink to a host path: nothing is mounted there (nor
    anywhere): the container is refused, as runc refuses it (issue 11, point 10)."""
    host = tmp_path / "host-proc"
    host.mkdir()
    os.rmdir(os.path.join(bundle.rootfs, "proc"))
    os.symlink(str(host), os.path.join(bundle.rootfs, "proc"))
    r = bundle.sh("true").run()
    assert r.returncode == 1 and "must be mounted on an ordinary directory" in r.stderr, r.stderr
    assert os.listdir(host) == []
    with open("/proc/self/mountinfo") as f:
        assert str(host) not in f.read()


def test_cve_2025_31133_dev_null_symlink_is_never_bound_over_a_masked_path(bundle):
    """CVE-2025-31133: with /dev from the bundle and /dev/null a symlink to
    /proc/sys/kernel/core_pattern, masking /proc/keys "with /dev/null" would bind the host's
    core_pattern there, writable. The runtime refuses to mask with anything but the null
    device, and starts nothing."""
    dev = os.path.join(bundle.path, "devdir")
    os.mkdir(dev)
    os.symlink("/proc/sys/kernel/core_pattern", os.path.join(dev, "null"))
    bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                               if not m["destination"].startswith("/dev")]
    bundle.config["mounts"].append({"destination": "/dev", "type": "bind", "source": "devdir",
                                    "options": ["rbind"]})
    with open("/proc/sys/kernel/core_pattern") as f:
        before = f.read()
    r = bundle.sh("echo started").run()
    assert r.stdout == ""
    assert r.returncode == 1
    assert r.stderr.startswith("runner: linux.maskedPaths["), r.stderr
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == before
    assert_nothing_left(bundle)


def test_cve_2025_52565_dev_console_symlink_is_not_a_bind_target(bundle):
    """CVE-2025-52565 class: with /dev from the rootfs and /dev/console a symlink to a
    procfs file, binding the pty "on /dev/console" would land on that file. The runtime
    replaces the symlink with a file of its own, so the pty is at /dev/console and procfs
    is untouched."""
    bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                               if m["destination"] not in ("/dev", "/dev/shm", "/dev/mqueue")]
    bundle.config["root"]["readonly"] = False
    os.makedirs(os.path.join(bundle.rootfs, "dev", "pts"), exist_ok=True)
    os.symlink("/proc/sys/kernel/core_pattern", os.path.join(bundle.rootfs, "dev", "console"))
    bundle.process["terminal"] = True
    r = bundle.sh("grep -c ' /proc/sys/kernel/core_pattern ' /proc/self/mountinfo; "
                  "grep -c ' /dev/console ' /proc/self/mountinfo; ls -l /dev/console | cut -c1").run(input="")
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace("\r", "").split() == ["0", "1", "c"]
    assert not os.path.islink(os.path.join(bundle.rootfs, "dev", "console"))
    assert_nothing_left(bundle)


# ---- kernel interfaces ----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/proc/sysrq-trigger", "/proc/sys/kernel/domainname",
                                  "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches",
                                  "/sys/kernel/rcu_expedited", "/sys/fs/cgroup/cgroup.procs"])
def test_host_kernel_knobs_are_read_only(bundle, path):
    """Writes to /proc/sysrq-trigger, /proc/sys and /sys would change the host kernel."""
    if not os.path.exists(path) and path != "/sys/fs/cgroup/cgroup.procs":
        pytest.skip(f"{path} does not exist on this host")
    secprobe.install(bundle)
    r = bundle.set_args("secprobe", "write", path, "0").run()
    assert r.stdout.startswith("err ") and r.stdout.split()[1] in ("EROFS", "EACCES", "ENOENT"), r.stdout
    if os.path.exists(path) and path.startswith("/proc/s"):
        assert r.stdout == "err EROFS\n"


@pytest.mark.parametrize("path", ["/proc/kcore", "/proc/keys", "/proc/timer_list"])
def test_masked_proc_files_read_empty(bundle, path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this host")
    secprobe.install(bundle)
    r = bundle.set_args("secprobe", "readn", path, "4096").run()
    assert r.stdout == "read 0\n"


def test_masked_sys_firmware_is_empty(bundle):
    r = bundle.sh("ls -A /sys/firmware | wc -l").run()
    assert r.stdout.strip() == "0"


def test_mknod_of_the_hosts_disk(bundle):
    """A block device for the host's root disk: without CAP_MKNOD it cannot be made; with
    it, the device cgroup keeps it from being opened."""
    st = os.stat("/")
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    secprobe.install(bundle)
    script = f"mknod /dev/hostdisk b {major} {minor}; echo mknod=$?; secprobe readn /dev/hostdisk 512"
    r = bundle.sh(script).run()
    assert r.stdout.startswith("mknod=1\n") and "Operation not permitted" in r.stderr
    for s in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][s].append("CAP_MKNOD")
    r = bundle.sh(script).run()
    assert r.stdout == "mknod=0\nerr EPERM\n", r.stderr


def test_mount_and_umount_are_refused(bundle):
    secprobe.install(bundle)
    r = bundle.sh('secprobe sys mount \\"none \\"/dev/shm \\"tmpfs 0 0; '
                  'secprobe sys umount2 \\"/proc/keys 0; secprobe sys umount2 \\"/proc/sys 2').run()
    assert r.stdout == "err EPERM\nerr EPERM\nerr EPERM\n", r.stderr


def test_user_namespace_games_do_not_unlock_anything(bundle):
    """`unshare -U` gives a process every capability over a new user namespace; the mounts it
    inherits are locked: masks cannot be removed, /proc/sys cannot be made writable."""
    secprobe.install(bundle)
    with open(os.path.join(bundle.rootfs, "bin", "inner.sh"), "w") as f:
        f.write('secprobe sys umount2 \\"/proc/keys 0; secprobe sys umount2 \\"/proc/sys 2\n'
                # MS_REMOUNT|MS_BIND|MS_NOSUID|MS_NODEV|MS_NOEXEC without MS_RDONLY
                'secprobe sys mount \\"none \\"/proc/sys \\"none 0x102e 0\n'
                'secprobe write /proc/sys/kernel/domainname x; secprobe readn /proc/keys 100\n')
    r = bundle.sh('unshare -Um sh /bin/inner.sh; unshare -Urm true; echo map=$?').run()
    lines = r.stdout.splitlines()
    assert lines[0] in ("err EINVAL", "err EPERM") and lines[1] in ("err EINVAL", "err EPERM"), r.stdout
    assert lines[2] == "err EPERM"          # remount of a locked read-only mount
    assert lines[3] in ("err EROFS", "err EACCES")
    assert lines[4] == "read 0"
    assert lines[5] == "map=1"              # mapping root needs CAP_SETUID, which it lacks


def test_ptrace_of_the_runner(bundle):
    """The runtime is not in the container's pid namespace at all; without one, tracing it
    is still refused (covered above): here, inside a pid namespace, it does not exist."""
    secprobe.install(bundle)
    r = bundle.set_args("secprobe", "parent").run()
    assert r.stdout == "ptrace ESRCH\nexe ENOENT\nmem ENOENT\n", r.stderr


# ---- keyrings -----------------------------------------------------------------------------

def _with_host_key(bundle, *args):
    """Run `runner ARGS` in a fresh session keyring holding a key "runner-test-secret"."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    nr_keyctl, nr_add_key = 250, 248  # x86_64

    def prepare():
        libc.syscall(nr_keyctl, 1, None)  # KEYCTL_JOIN_SESSION_KEYRING, anonymous
        libc.syscall(nr_add_key, b"user", b"runner-test-secret", b"hunter2", 7, -3)

    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers for the host side are x86_64's")
    return subprocess.run(RUNNER + ["--root", bundle.root] + list(args), preexec_fn=prepare,
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_keyring_new_session_keyring_hides_the_hosts_keys(bundle):
    """The container gets a session keyring of its own: a key in the runner's session
    keyring cannot be found from inside."""
    secprobe.install(bundle)
    bundle.set_args("secprobe", "keysearch", "runner-test-secret").write()
    cid = new_id()
    bundle.last_id = cid
    r = _with_host_key(bundle, "run", "--bundle", bundle.path, cid)
    assert r.stdout == "err ENOKEY\n", r.stderr


def test_keyring_no_new_keyring_shares_it_but_the_default_profile_blocks_keyctl(bundle, tmp_path):
    """--no-new-keyring keeps the runner's session keyring (that is what it is for: the key
    is found); the default seccomp profile still keeps keyctl, add_key and request_key away."""
    secprobe.install(bundle)
    bundle.set_args("secprobe", "keysearch", "runner-test-secret").write()
    cid = new_id()
    bundle.last_id = cid
    r = _with_host_key(bundle, "run", "--no-new-keyring", "--bundle", bundle.path, cid)
    assert r.stdout.startswith("ok "), r.stdout + r.stderr
    d = tmp_path / "spec"
    d.mkdir()
    assert bundle.runner("spec", "-b", str(d), "--seccomp", "default").returncode == 0
    import json

    with open(d / "config.json") as f:
        bundle.linux["seccomp"] = json.load(f)["linux"]["seccomp"]
    for new_keyring in ([], ["--no-new-keyring"]):
        bundle.sh("secprobe keysearch runner-test-secret; secprobe keyring; "
                  'secprobe sys add_key \\"user \\"k \\"v 1 -3').write()
        cid = new_id()
        bundle.last_id = cid
        r = _with_host_key(bundle, "run", *new_keyring, "--bundle", bundle.path, cid)
        assert r.stdout == "err EPERM\nerr EPERM\nerr EPERM\n", (new_keyring, r.stdout, r.stderr)


# ---- device nodes keep their owner (crun 1.8.1 chowned /dev/null on exec --user) -----------

def _dev_null():
    st = os.stat("/dev/null")
    return st.st_uid, st.st_gid, st.st_mode


def test_exec_as_another_user_never_chowns_host_dev_null(bundle):
    before = _dev_null()
    cid = secprobe.start_detached(bundle.set_args("sleep", "60"))
    try:
        with open("/dev/null", "r+") as null:
            r = subprocess.run(RUNNER + ["--root", bundle.root, "exec", "--user", "1000:1000", cid,
                                         "sh", "-c", "id -u; ls -ln /dev/null /proc/self/fd/0 >&2"],
                               stdin=null, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=60, cwd=REPO)
        assert r.stdout == "1000\n", r.stderr
        assert _dev_null() == before
    finally:
        bundle.runner("delete", "--force", cid)


def test_user_namespace_container_never_chowns_host_dev_null(bundle):
    before = _dev_null()
    make_reachable(bundle.path)
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.sh("id -u; cat /dev/null; echo x > /dev/null; echo ok")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    with open("/dev/null", "r+") as null:
        r = subprocess.run(RUNNER + ["--root", bundle.root, "run", "--bundle", bundle.path, cid],
                           stdin=null, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60, cwd=REPO)
    assert r.stdout == "1000\nok\n", r.stderr
    assert _dev_null() == before
