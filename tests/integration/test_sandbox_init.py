"""The shim's init (csrc/trampoline.c): the command is not pid 1 of its pid namespace, so a
signal it sends itself ends it as it would anywhere, and orphans are reaped. Side by side
with bubblewrap (`bwrap --unshare-pid` has an init of its own, and `--as-pid-1` makes the
command pid 1, the mistake the init avoids: the programs are shown to hit it)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from conftest import new_id, need_root
from test_sandbox_hostile import _box, _hostile, image  # noqa: F401  (the image fixture)

# (the hostile program's arguments, the signal that must end it)
SELF_SIGNALS = [(["abort"], signal.SIGABRT), (["raise", "11"], signal.SIGSEGV),
                (["raise", "15"], signal.SIGTERM), (["killpg"], signal.SIGKILL)]


@pytest.fixture
def box(image):  # noqa: F811
    b = _box(image, "64m")
    yield b
    b.host.assert_box_gone()


def _bwrap(image: str, args: list, as_pid_1: bool = False) -> subprocess.CompletedProcess:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    # setsid: a kill(0, ...) of the program must not reach this test's process group
    cmd = ["setsid", "-w", "bwrap", "--ro-bind", image, "/", "--proc", "/proc", "--dev", "/dev",
           "--unshare-pid", "--new-session", "--die-with-parent"]
    cmd += ["--as-pid-1"] if as_pid_1 else []
    return subprocess.run(cmd + ["--", "/bin/hostile"] + args, capture_output=True,
                          timeout=60)


@pytest.mark.parametrize("args,sig", SELF_SIGNALS, ids=lambda v: str(v))
def test_a_signal_to_itself_ends_the_command_as_under_bwrap(box, image, args, sig):  # noqa: F811
    r = box.run(["/bin/hostile"] + args)
    assert (r.status, r.signal, r.exit_code) == ("SG", sig, None), r
    assert b"survived" not in r.stdout
    # bubblewrap's init reports the same death, as 128 + the signal
    b = _bwrap(image, args)
    assert b.returncode == 128 + sig and b"survived" not in b.stdout
    # the command as pid 1 (docker run without --init, this sandbox before): the kernel
    # spares it a signal it sends itself, abort() falls back to a fault
    p1 = _bwrap(image, args, as_pid_1=True)
    assert b"survived" in p1.stdout or p1.returncode != 128 + sig
    box.host.assert_run_left_nothing()


def test_orphans_are_reaped_as_under_bwrap(box, image):  # noqa: F811
    r = box.run(["/bin/hostile", "zombies", "10"])
    assert (r.status, r.stdout) == ("OK", b"zombies 0\n")
    assert _bwrap(image, ["zombies", "10"]).stdout == b"zombies 0\n"
    assert _bwrap(image, ["zombies", "10"], as_pid_1=True).stdout == b"zombies 10\n"
    box.host.assert_run_left_nothing()


def test_init_is_pid_1_and_passes_signals_on(box):
    r = box.run(["sh", "-c", "echo $$; cat /proc/1/comm; ls -l /proc/1/exe 2>&1 | wc -l"])
    assert r.stdout.split()[:2] == [b"2", b"memfd:init"]
    # a signal to the init goes to the command; the init is not the command's to trace
    r = box.run(["sh", "-c", "kill -TERM 1; sleep 3; echo not reached"])
    assert (r.status, r.signal) == ("SG", signal.SIGTERM) and r.stdout == b""
    r = box.run(["/bin/hostile", "ptrace", "1"])
    assert b"attach 1: EPERM" in r.stdout
    # the wall limit still ends everything (the init is what is killed)
    import dataclasses

    r = box.run(["sh", "-c", "sleep 30 & sleep 30"],
                limits=dataclasses.replace(box.limits, wall_time=1))
    assert r.status == "TO"
    box.host.assert_run_left_nothing()


def test_libcontainer_run_with_init(bundle, tmp_path):
    """CreateRequest(init=True), for any caller (docker run --init): the exit code is the
    command's, or 128 + its signal as tini and docker-init report it; `init_status_fd`
    gets the raw wait status."""
    need_root()
    import libcontainer

    shutil.copy(_hostile(), os.path.join(bundle.rootfs, "bin", "hostile"))
    bundle.set_args("/bin/hostile", "abort").write()
    out = tmp_path / "out"
    with open(out, "wb") as f:
        null = os.open("/dev/null", os.O_RDONLY)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            code = libcontainer.run(bundle.path, new_id(), root=bundle.root,
                                    stdio=(null, f.fileno(), f.fileno()), init=True,
                                    init_status_fd=w)
            os.close(w)
            status = int.from_bytes(os.read(r, 4), "little")
        finally:
            os.close(null)
            os.close(r)
    assert code == 128 + signal.SIGABRT
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGABRT
    # an exit code is passed on as it is; nothing is written for it
    bundle.sh("exit 5").write()
    assert libcontainer.run(bundle.path, new_id(), root=bundle.root, init=True) == 5
    # a signal to the container (runner kill) reaches the command through the init
    bundle.sh("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done").write()
    cid = new_id()
    bundle.last_id = cid
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    c = libcontainer.run(bundle.path, cid, root=bundle.root, detach=True, init=True,
                         stdio=(None, wfd, None))
    os.close(wfd)
    try:
        assert os.read(rfd, 16) == b"ready\n"
        c.kill(signal.SIGTERM)
        assert c.wait() == 7
    finally:
        os.close(rfd)
        c.delete(force=True)
    with pytest.raises(libcontainer.InvalidArgument, match="init_status_fd"):
        libcontainer.run(bundle.path, new_id(), root=bundle.root, init=True, init_status_fd=1)


def test_init_under_a_profile_refusing_its_signal_wait(bundle):
    """A seccomp profile that refuses rt_sigtimedwait: the init only waits (no forwarding)
    and still ends with the command, though a process it left behind lives on."""
    need_root()
    import libcontainer

    bundle.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["rt_sigtimedwait"], "action": "SCMP_ACT_ERRNO"}]}
    bundle.sh("sleep 100 & exit 4").write()
    assert libcontainer.run(bundle.path, new_id(), root=bundle.root, init=True) == 4
