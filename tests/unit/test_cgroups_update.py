"""`update` on a cgroup v2 tree made of plain files (this host cannot run v2 containers):
Docker's zeros change nothing, a write the kernel refuses puts back what was written,
and an update that cannot be applied writes nothing. The v1 side is compared with runc
in tests/integration/test_resources_as_runc.py."""
from __future__ import annotations

import errno
import os

import pytest

from libcontainer import cgroups
from libcontainer.cgroups import fs, update
from libcontainer.errors import ConfigError

M = 1 << 20
FILES = {"memory.max": "52428800", "memory.swap.max": "52428800", "memory.low": "0",
         "cpu.max": "max 100000", "cpu.weight": "100", "io.weight": "default 100",
         "io.max": "8:0 rbps=1000 wbps=max riops=max wiops=max", "pids.max": "max",
         "cpuset.cpus": "", "cgroup.controllers": "", "cgroup.subtree_control": ""}


def _replace(path: str, value: str) -> None:
    """A write as a cgroup file takes it: the new value replaces the old (plain files
    would keep the old one's tail)."""
    with open(path, "r+") as f:
        f.write(value)
        f.truncate()


@pytest.fixture
def v2(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "write", _replace)
    root = tmp_path / "cg"
    c = root / "c"
    c.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu cpuset io memory pids\n")
    (root / "cgroup.subtree_control").write_text("cpu cpuset io memory pids\n")
    for name, text in FILES.items():
        (c / name).write_text(text + "\n")
    host = cgroups.Host({}, str(root), {"": "/"})
    host._v2_ctrls = {"cpu", "cpuset", "io", "memory", "pids"}
    m = cgroups.Manager({"mode": "v2", "paths": {}, "unified": str(c),
                         "resources": {"memory": {"limit": 50 * M, "swap": 100 * M}}})
    return m, host, c


def content(c) -> dict:
    return {n: (c / n).read_text().strip() for n in FILES}


def test_docker_update_changes_only_what_is_not_zero(v2):
    m, host, c = v2
    before = content(c)
    m.update({"memory": {"limit": 100 * M, "reservation": 0, "swap": 200 * M, "kernel": 0},
              "cpu": {"shares": 0, "quota": 0, "period": 0}, "blockIO": {"weight": 0}}, host)
    after = content(c)
    assert after.pop("memory.max") == str(100 * M)
    assert after.pop("memory.swap.max") == str(100 * M)  # v2's swap is swap alone
    before.pop("memory.max"), before.pop("memory.swap.max")
    assert after == before
    assert m.resources == {"memory": {"limit": 100 * M, "swap": 200 * M}}


def test_a_refused_write_puts_back_what_was_written(v2, monkeypatch):
    m, host, c = v2
    before = content(c)
    real = fs.write

    def refuse_cpuset(path, value):
        if path.endswith("cpuset.cpus"):
            raise OSError(errno.EINVAL, "Invalid argument")
        real(path, value)
    monkeypatch.setattr(fs, "write", refuse_cpuset)
    with pytest.raises(ConfigError) as e:
        m.update({"memory": {"limit": 300 * M, "swap": 600 * M},
                  "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 7}]},
                  "cpu": {"quota": 5000, "cpus": "0-9"}}, host)
    assert e.value.field == "linux.resources.cpu.cpus"
    assert content(c) == before
    assert m.resources == {"memory": {"limit": 50 * M, "swap": 100 * M}}


def test_an_update_that_cannot_be_applied_writes_nothing(v2):
    m, host, c = v2
    os.unlink(c / "pids.max")
    before = {n: (c / n).read_text() for n in FILES if n != "pids.max"}
    for res, field in (({"memory": {"limit": 300 * M}}, "linux.resources.memory.swap"),
                       ({"memory": {"limit": 300 * M, "swap": 600 * M}, "pids": {"limit": 5}},
                        "linux.resources.pids.limit"),
                       ({"memory": {"limit": 300 * M, "swap": 600 * M},
                         "network": {"classID": 5}}, "linux.resources.network")):
        with pytest.raises(ConfigError) as e:
            m.update(res, host)
        assert e.value.field == field
        assert {n: (c / n).read_text() for n in FILES if n != "pids.max"} == before


def test_put_back_lines():
    old = "8:0 rbps=1000 wbps=max riops=max wiops=max\n"
    assert update.put_back("/x/io.max", old, ["8:0 rbps=5", "8:16 wiops=3"]) == [
        "8:0 rbps=1000 wbps=max riops=max wiops=max",
        "8:16 rbps=max wbps=max riops=max wiops=max"]
    assert update.put_back("/x/io.weight", "default 100\n", ["default 500"]) == ["default 100"]
    assert update.put_back("/x/io.bfq.weight", "default 100\n", ["500"]) == ["100"]
    assert update.put_back("/x/memory.oom_control",
                           "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", ["1"]) == ["0"]
    assert update.put_back("/x/blkio.throttle.read_bps_device", "", ["8:0 7"]) == ["8:0 0"]
    assert update.put_back("/x/cpu.max", "max 100000\n", ["5000 100000"]) == ["max 100000"]
