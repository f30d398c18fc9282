"""fileio: whole files through raw syscalls, with open()'s results."""
import os

import pytest

from libcontainer import fileio


def test_read_gives_the_whole_file_past_one_chunk(tmp_path):
    p = tmp_path / "big"
    data = os.urandom(200_000)
    p.write_bytes(data)
    assert fileio.read(str(p)) == data
    (tmp_path / "empty").write_bytes(b"")
    assert fileio.read(str(tmp_path / "empty")) == b""


def test_read_once_gives_what_the_kernel_makes_in_one_piece(tmp_path):
    """read_once: one read for a regular file, /proc/PID/stat, a cgroup value; a read that
    fills its buffer goes on to the end."""
    p = tmp_path / "f"
    for size in (0, 10, 65535, 65536, 65537, 200_000):
        data = os.urandom(size)
        p.write_bytes(data)
        assert fileio.read_once(str(p)) == data, size
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        stat = f.read()
    assert fileio.read_once(f"/proc/{os.getpid()}/stat").split(b")")[0] == stat.split(b")")[0]
    with pytest.raises(NotADirectoryError):
        fileio.read_once(str(p / "state.json"))


def test_read_of_a_proc_file_matches_open():
    with open("/proc/self/mountinfo", "rb") as f:
        expected = f.read()
    assert fileio.read("/proc/self/mountinfo").split(b"\n")[0] == expected.split(b"\n")[0]


def test_create_replaces_and_honours_the_umask(tmp_path):
    p = str(tmp_path / "f")
    old = os.umask(0o027)
    try:
        fileio.create(p, b"first, longer")
        fileio.create(p, b"second")
    finally:
        os.umask(old)
    assert fileio.read(p) == b"second"
    assert os.stat(p).st_mode & 0o777 == 0o640


def test_errors_are_the_oserrors_open_gives(tmp_path):
    with pytest.raises(FileNotFoundError):
        fileio.read(str(tmp_path / "missing"))
    with pytest.raises(IsADirectoryError):
        fileio.read(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        fileio.write(str(tmp_path / "missing"), b"x")  # never creates
    assert not (tmp_path / "missing").exists()
