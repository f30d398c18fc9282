"""process.terminal (console socket and foreground relay), and the Python API used
directly, without the CLI."""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, need_root, new_id
from test_exec import _console_server, _read_until, _recv_fd
from test_lifecycle import detached

import libcontainer


def test_foreground_run_relays_the_pty(bundle):
    bundle.process["terminal"] = True
    bundle.process["consoleSize"] = {"height": 30, "width": 100}
    r = bundle.sh("tty; stty size; read x; echo got-$x").run(input="abc\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout.replace("\r", "").splitlines()  # the pty echoes our input too
    assert any(line.startswith("/dev/pts/") for line in out)
    assert "30 100" in out
    assert "got-abc" in out


def test_console_is_dev_console(bundle):
    bundle.process["terminal"] = True
    r = bundle.sh("ls -l /dev/console | cut -c1; [ -t 0 ] && echo tty").run(input="")
    assert r.stdout.replace("\r", "").split() == ["c", "tty"]


@pytest.mark.parametrize("uid", [0, 1000])
def test_console_belongs_to_the_user_and_the_tty_group(bundle, uid):
    """The pty is the process's, in group tty (5), as devpts' gid=5 says (runc, crun);
    not in the process's own group (issue 11, point 15)."""
    bundle.process["terminal"] = True
    bundle.process["user"] = {"uid": uid, "gid": 1000}
    r = bundle.sh("stat -c '%u:%g %a' $(tty) /dev/console").run(input="")
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace("\r", "").split("\n")[:2] == [f"{uid}:5 620", f"{uid}:5 620"]


def test_create_with_console_socket(bundle, tmp_path):
    bundle.process["terminal"] = True
    bundle.sh("echo hello-tty; sleep 0.2")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    sock_path = str(tmp_path / "c.sock")
    srv = _console_server(sock_path)
    try:
        p = subprocess.Popen(RUNNER + ["--root", bundle.root, "create", "--bundle", bundle.path,
                                       "--console-socket", sock_path, cid],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, cwd=REPO)
        _, master = _recv_fd(srv)
        assert p.wait(30) == 0, p.stderr.read()
        bundle.runner("start", cid, check=True)
        out = _read_until(master, b"hello-tty")
        os.close(master)
    finally:
        srv.close()
        bundle.runner("delete", "--force", cid)
    assert b"hello-tty" in out
    assert_nothing_left(bundle)


def test_detached_terminal_needs_console_socket(bundle):
    bundle.process["terminal"] = True
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r = detached(bundle, "create", "--bundle", bundle.path, cid)
    assert r.returncode == 1 and "--console-socket" in r.stderr
    r = detached(bundle, "create", "--bundle", bundle.path, "--console-socket",
                 "/nonexistent/sock", cid)
    assert r.returncode == 1 and "/nonexistent/sock" in r.stderr
    assert_nothing_left(bundle)


# ---- the library, without the CLI ------------------------------------------------------

def test_api_create_start_wait_delete(bundle, tmp_path):
    need_root()
    bundle.sh("read x; echo out-$x; echo err >&2; exit 3")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r_in, w_in = os.pipe()
    out = open(tmp_path / "out", "w+")
    err = open(tmp_path / "err", "w+")
    c = libcontainer.create(bundle.path, cid, root=bundle.root, stdio=(r_in, out, err))
    os.close(r_in)
    assert isinstance(c, libcontainer.Container)
    assert c.status() == "created" and c.state()["pid"] == c.pid
    assert libcontainer.load(cid, root=bundle.root).status() == "created"
    c.start()
    os.write(w_in, b"x\n")
    os.close(w_in)
    assert c.wait() == 3
    assert c.status() == "stopped"
    c.delete()
    out.seek(0)
    err.seek(0)
    assert out.read() == "out-x\n" and err.read() == "err\n"
    with pytest.raises(libcontainer.NotFound):
        libcontainer.load(cid, root=bundle.root)
    assert_nothing_left(bundle)


def test_api_errors_are_typed(bundle):
    need_root()
    bundle.sh("sleep 30")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    c = libcontainer.create(bundle.path, cid, root=bundle.root)
    try:
        with pytest.raises(libcontainer.WrongState):
            c.delete()
        with pytest.raises(libcontainer.AlreadyExists):
            libcontainer.create(bundle.path, cid, root=bundle.root)
        c.start()
        with pytest.raises(libcontainer.WrongState):
            c.start()
        c.kill(9)
        assert c.wait() == 137
    finally:
        c.delete(force=True)
    bundle.config["process"]["args"] = ["nosuch"]
    bundle.write()
    with pytest.raises(libcontainer.ExecNotFound):
        libcontainer.run(bundle.path, new_id(), root=bundle.root)
    with pytest.raises(libcontainer.ConfigError) as e:
        bundle.config["linux"]["namespaces"].append({"type": "bogus"})
        bundle.write()
        libcontainer.run(bundle.path, new_id(), root=bundle.root)
    assert e.value.field.startswith("linux.namespaces[")
    assert_nothing_left(bundle)


def test_api_run_foreground_with_pipes(bundle, tmp_path):
    need_root()
    bundle.sh("echo api-run")
    bundle.write()
    out = open(tmp_path / "o", "w+")
    cid = new_id()
    bundle.last_id = cid
    assert libcontainer.run(bundle.path, cid, root=bundle.root, stdio=(None, out, None)) == 0
    out.seek(0)
    assert out.read() == "api-run\n"
    assert_nothing_left(bundle)
