"""The static probe (secprobe.c) that the security tests copy into a container's rootfs."""
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(HERE, "secprobe.c")
BIN = os.path.join(REPO, "build", "test-bin", "secprobe")


def binary() -> str:
    """Build the probe once (static, so it runs in the busybox rootfs)."""
    if os.path.exists(BIN) and os.path.getmtime(BIN) >= os.path.getmtime(SRC):
        return BIN
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the test probe")
    os.makedirs(os.path.dirname(BIN), exist_ok=True)
    tmp = BIN + f".{os.getpid()}"
    r = subprocess.run(["gcc", "-static", "-O2", "-o", tmp, SRC], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build the test probe: {r.stderr[-500:]}")
    os.rename(tmp, BIN)
    return BIN


def install(bundle) -> str:
    """Copy the probe into the bundle's rootfs; returns its path in the container."""
    shutil.copy(binary(), os.path.join(bundle.rootfs, "bin", "secprobe"))
    return "/bin/secprobe"


def host_root() -> str:
    st = os.stat("/")
    return f"{st.st_dev} {st.st_ino}"


def start_detached(bundle, *flags) -> str:
    """`runner run -d` the bundle with its stdio on /dev/null (a pipe would keep the caller
    waiting for the container); returns the container id. Delete it with `delete --force`."""
    import sys
    import tempfile

    sys.path.insert(0, os.path.dirname(HERE))
    from conftest import RUNNER, new_id

    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    with tempfile.TemporaryFile() as err:
        r = subprocess.run(RUNNER + ["--root", bundle.root, "run", "-d", *flags, "--bundle",
                                     bundle.path, cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, timeout=60)
        err.seek(0)
        msg = err.read().decode()
    assert r.returncode == 0, msg
    return cid
