"""The state layer's crash rules (libcontainer/state.py): an ID's directory appears whole
(with its state.json) in one rename and goes in one rename; what a crash leaves of the
private directories is swept, never a live create's."""
from __future__ import annotations

import os

import pytest

from libcontainer import state as S
from libcontainer.errors import AlreadyExists, DamagedState, NotFound


def me() -> dict:
    return {"creator": os.getpid(), "creator_start": S.proc_stat(os.getpid())[1]}


def test_claim_is_whole_and_exclusive(tmp_path):
    root = str(tmp_path)
    d = S.StateDir(root, "c1")
    lock = d.create(dict(me(), status="creating"))
    try:
        assert sorted(os.listdir(d.path)) == [".lock", "state.json"]
        assert d.read()["status"] == "creating"
        assert os.listdir(root) == ["c1"]  # the private directory is gone
        with pytest.raises(AlreadyExists):
            S.StateDir(root, "c1").create(me())
        assert os.listdir(root) == ["c1"]  # the loser left nothing
    finally:
        lock.__exit__()


def test_remove_frees_the_id_at_once(tmp_path):
    root = str(tmp_path)
    d = S.StateDir(root, "c1")
    d.create(me()).__exit__()
    assert d.remove() is True
    assert os.listdir(root) == []
    assert d.remove() is False
    with pytest.raises(NotFound):
        d.read()


def test_a_bare_directory_is_damaged_not_missing(tmp_path):
    os.mkdir(tmp_path / "c1")
    with pytest.raises(DamagedState):
        S.StateDir(str(tmp_path), "c1").read()


def test_sweep_removes_dead_creators_and_deletes_only(tmp_path):
    root = str(tmp_path)
    live = f"{S.CREATING}{os.getpid()}-{S.proc_stat(os.getpid())[1]}-1"
    reused = f"{S.CREATING}{os.getpid()}-1-1"          # our pid, another start time: dead
    dead = f"{S.CREATING}999999999-5-1"
    deleted = f"{S.DELETED}1-1"
    for name in (live, reused, dead, deleted, "c1"):
        os.mkdir(os.path.join(root, name))
        open(os.path.join(root, name, "state.json"), "w").close()
    removed = sorted(os.path.basename(p) for p in S.sweep(root))
    assert removed == sorted([reused, dead, deleted])
    assert sorted(os.listdir(root)) == sorted([live, "c1"])


HOLDER = """
import os, sys, fcntl
sys.path.insert(0, sys.argv[1])
from libcontainer import state as S
d = S.StateDir(sys.argv[2], "c1")
fd = os.open(os.path.join(d.path, ".lock"), os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()          # the other command is waiting on the lock now
d.remove()                    # deleted under the lock...
if sys.argv[3] == "anew":     # ...and perhaps created anew by someone else
    S.StateDir(sys.argv[2], "c1").create({"creator": 1, "creator_start": 1}).__exit__()
os.close(fd)
"""


@pytest.mark.parametrize("then", ["gone", "anew"])
def test_a_lock_that_waited_through_a_delete(tmp_path, then):
    """A command waiting on the container's lock while another deletes it (and perhaps
    someone creates the ID anew) must not go on under the old lock: NotFound, or the new
    container's lock."""
    import subprocess
    import sys
    import threading
    import time

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    root = str(tmp_path)
    d = S.StateDir(root, "c1")
    d.create(me()).__exit__()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, repo, root, then],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = []

        def waiter():
            try:
                with d.lock():
                    result.append(d.read()["creator"])
            except NotFound:
                result.append("not found")

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.2)
        assert not result  # still waiting on the lock
        holder.stdin.write("go\n")
        holder.stdin.flush()
        t.join(10)
        assert result == (["not found"] if then == "gone" else [1])
    finally:
        holder.kill()
        holder.wait()


def test_crash_point_is_free_when_unset():
    assert S._CRASH_AT == 0 or "RUNNER_CRASH_AT" in os.environ
    S.crash_point("nothing happens")


@pytest.mark.parametrize("suffix", ["", "/", "//"])
def test_a_root_given_with_a_trailing_slash_names_the_same_dir(tmp_path, suffix):
    # the state dir's path is built with an f-string (a list's hot path), not os.path.join
    d = S.StateDir(str(tmp_path) + suffix, "c1")
    assert d.path == f"{tmp_path}/c1"
    d.create(dict(me(), status="creating")).__exit__()
    assert d.read()["status"] == "creating" and os.listdir(tmp_path) == ["c1"]
