"""libcontainer.sandbox without root: limits, results, the config it writes, the import
graph (neither `import libcontainer` nor `runner run` loads it)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_limits_parse_and_refuse():
    from libcontainer.errors import InvalidArgument
    from libcontainer.sandbox import Limits, parse_size

    lim = Limits(cpu_time=2, memory="128m", output="1k", disk="1.5g", pids=10)
    assert (lim.cpu_time, lim.wall_time, lim.memory, lim.output, lim.disk) == \
        (2.0, 5.0, 128 << 20, 1024, int(1.5 * (1 << 30)))
    assert Limits(cpu_time=None).wall_time == 60.0
    assert Limits(cpu_time=1, wall_time=3).wall_time == 3.0
    assert lim.but(cpu_time=3).wall_time == 7.0
    assert parse_size("64 MiB", "x") == 64 << 20 and parse_size(4096, "x") == 4096
    for field, bad in (("cpu_time", 0), ("cpu_time", "1"), ("wall_time", float("inf")),
                       ("memory", "12q"), ("memory", 1000), ("pids", 1.5), ("pids", True),
                       ("output", -1), ("open_files", 0), ("disk", "")):
        with pytest.raises(InvalidArgument, match=f"limits.{field}"):
            Limits(**{field: bad})


def test_result_status_precedence():
    from libcontainer.sandbox import Result

    def status(**kw):
        r = Result(**kw)
        r.decide()
        return r.status

    assert status(exit_code=0) == "OK"
    assert status(exit_code=1) == "RE"
    assert status(signal=11) == "SG"
    assert status(signal=9, oom_killed=True) == "ML"
    assert status(signal=9, oom_killed=True, timed_out=True) == "TO"
    r = Result(signal=11)
    r.decide()
    assert r.meta()["exitsig"] == 11 and r.meta()["status"] == "SG" and "SIGSEGV" in r.message
    r = Result(exit_code=0, cpu_time=0.1234, duration=0.5, max_rss=2048)
    r.decide()
    assert r.meta() == {"time": 0.123, "time-wall": 0.5, "max-rss": 2, "exitcode": 0}


def test_config_is_strict():
    from libcontainer import spec as specmod
    from libcontainer.sandbox import Limits, config

    cfg = config.make(args=["true"], env=["PATH=/bin"], cwd="/box", uid=65534, gid=65534,
                      groups=[], rootfs="/", readonly=True, workdir_src="/w",
                      workdir_dst="/box", limits=Limits(pids=7, memory="32m"), network=False)
    p = cfg["process"]
    assert all(v == [] for v in p["capabilities"].values())
    assert p["noNewPrivileges"] is True and p["user"] == {"uid": 65534, "gid": 65534}
    kinds = [n["type"] for n in cfg["linux"]["namespaces"]]
    assert set(kinds) == {"pid", "ipc", "uts", "mount", "cgroup", "network"}
    assert cfg["linux"]["resources"]["pids"] == {"limit": 7}
    assert cfg["linux"]["resources"]["memory"]["limit"] == 32 << 20
    assert cfg["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "/proc/kcore" in cfg["linux"]["maskedPaths"]
    tmp = next(m for m in cfg["mounts"] if m["destination"] == "/tmp")
    assert f"size={64 << 20}" in tmp["options"]
    specmod.Spec.parse(cfg, "/")  # the runtime takes it


def test_import_libcontainer_and_runner_run_do_not_load_sandbox():
    code = ("import sys, libcontainer, runner.cli, runner.lifecycle, libcontainer.container\n"
            "print([m for m in sys.modules if 'sandbox' in m])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_workdir_names_refused(tmp_path):
    from libcontainer.errors import InvalidArgument
    from libcontainer.sandbox import hostfs

    for bad in ("", "/etc/passwd", "../x", "a/../../b", "a\0b"):
        with pytest.raises(InvalidArgument):
            hostfs.read_file(str(tmp_path), bad)
    (tmp_path / "ok").write_bytes(b"yes")
    os.symlink("/etc/passwd", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    assert hostfs.read_file(str(tmp_path), "ok") == b"yes"
    assert hostfs.read_file(str(tmp_path), "./ok", limit=1) == b"y"
    with pytest.raises(InvalidArgument, match="symbolic link"):
        hostfs.read_file(str(tmp_path), "link")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        hostfs.read_file(str(tmp_path), "fifo")
    with pytest.raises(FileNotFoundError):
        hostfs.read_file(str(tmp_path), "missing")


def test_listdir_refuses_links(tmp_path):
    from libcontainer.errors import InvalidArgument
    from libcontainer.sandbox import hostfs

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"")
    os.symlink("/etc", tmp_path / "l")
    assert hostfs.list_dir(str(tmp_path)) == ["d", "l"]
    assert hostfs.list_dir(str(tmp_path), "d") == ["x"]
    with pytest.raises(InvalidArgument):
        hostfs.list_dir(str(tmp_path), "l")


def test_public_names_are_documented_and_typed():
    """Every public name of the package, and every public method and property of its
    classes, has a docstring and annotated parameters and return (the issue's last item)."""
    import inspect

    from libcontainer import sandbox

    for name in sandbox.__all__:
        obj = getattr(sandbox, name)
        if isinstance(obj, str):
            continue
        assert obj.__doc__ and obj.__doc__.strip(), name
        if inspect.isfunction(obj):
            members = {name: obj}
        else:
            members = {n: m for n, m in vars(obj).items()
                       if (inspect.isfunction(m) or isinstance(m, property))
                       and (not n.startswith("_") or n in ("__init__", "__enter__", "__exit__"))}
        for mname, m in members.items():
            fn = m.fget if isinstance(m, property) else m
            where = f"{name}.{mname}"
            assert fn.__doc__ and fn.__doc__.strip() or mname == "__init__" and obj.__doc__, where
            sig = inspect.signature(fn)
            for p in list(sig.parameters.values())[0 if fn is obj else 1:]:
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or mname == "__exit__":
                    assert p.annotation is not p.empty, f"{where}({p.name})"
            assert sig.return_annotation is not sig.empty, where
    # arun takes what run takes, by name
    from libcontainer.sandbox import Sandbox

    run, arun = (inspect.signature(f) for f in (Sandbox.run, Sandbox.arun))
    assert list(run.parameters) == list(arun.parameters)


def test_sweep_removes_only_what_dead_owners_left(tmp_path):
    import multiprocessing

    from libcontainer.sandbox import hostfs

    live = tmp_path / f"{os.getpid()}-1"
    live.mkdir()
    fd = hostfs.hold(str(live))
    # a directory whose owner held its lock and died (in another pid namespace its pid
    # may even look alive: the lock decides)
    dead = tmp_path / f"{os.getpid()}-2"
    dead.mkdir()
    p = multiprocessing.get_context("fork").Process(target=hostfs.hold, args=(str(dead),))
    p.start()
    p.join()
    (dead / "state").mkdir()
    try:
        assert hostfs.sweep(str(tmp_path)) == [str(dead)]
        assert live.exists() and not dead.exists()
    finally:
        os.close(fd)
