"""The library as a long-lived program uses it: warnings through `logging`, run_many on
threads, cleanup in the background, the plan cache."""
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, assert_nothing_left, leftovers, new_id

import libcontainer

# a capability no kernel has: the runtime warns and skips it
UNKNOWN_CAP = {"bounding": ["CAP_KILL", "CAP_FLY"], "effective": ["CAP_KILL"],
               "permitted": ["CAP_KILL"]}


def _in_subprocess(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=REPO, timeout=60, env={**os.environ, "PYTHONPATH": REPO})


def test_library_warnings_go_to_logging_not_stderr(bundle):
    bundle.process["capabilities"] = UNKNOWN_CAP
    bundle.write()
    ids = [new_id() for _ in range(3)]
    r = _in_subprocess(f"""
        import libcontainer, os
        null = os.open("/dev/null", os.O_RDWR)
        for cid in {ids!r}:
            assert libcontainer.run({bundle.path!r}, cid, root={bundle.root!r},
                                    stdio=(null, null, null)) == 0
        """)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # unconfigured: nothing sprayed on the program's stderr
    r = _in_subprocess(f"""
        import libcontainer, logging, os
        seen = []
        class H(logging.Handler):
            def emit(self, record):
                seen.append((record.name, record.levelname, record.getMessage()))
        logging.getLogger("libcontainer").addHandler(H())
        null = os.open("/dev/null", os.O_RDWR)
        assert libcontainer.run({bundle.path!r}, {ids[0]!r}, root={bundle.root!r},
                                stdio=(null, null, null)) == 0
        print(seen)
        """)
    assert r.returncode == 0, r.stderr
    assert "('libcontainer', 'WARNING', \"process.capabilities.bounding[1]: unknown " \
           "capability 'CAP_FLY'; skipped\")" in r.stdout
    # the CLI prints the same warning as before, on its stderr
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    assert "runner: warning: process.capabilities.bounding[1]: unknown capability" in r.stderr
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)


def test_run_many_on_threads(bundle, tmp_path):
    """Exit codes in job order, a bad job's error in its place, nothing left; the jobs run
    as another user (the id switch is where a child of a threaded parent used to hang)."""
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.sh("exit 7")
    bundle.write()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"ociVersion": "1.0.2", "root": {"path": "nowhere"}}')
    ids = [new_id() for _ in range(6)]
    null = os.open("/dev/null", os.O_RDWR)
    try:
        jobs = [(bundle.path, cid) for cid in ids[:5]] + [(str(bad), ids[5])]
        results = libcontainer.run_many(jobs, workers=3, root=bundle.root,
                                        stdio=(null, null, null))
    finally:
        os.close(null)
    assert results[:5] == [7] * 5
    assert isinstance(results[5], libcontainer.ConfigError)
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path, bundle.mark)


def test_background_cleanup_frees_the_id_at_once(bundle):
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    for _ in range(3):  # the same id again at once: the create waits for its teardown
        assert libcontainer.run(bundle.path, cid, root=bundle.root, cleanup="background") == 0
    libcontainer.wait_cleanup()
    assert_nothing_left(bundle)
    with pytest.raises(libcontainer.InvalidArgument):
        libcontainer.run(bundle.path, cid, root=bundle.root, cleanup="later")


def test_a_changed_config_is_parsed_again(bundle):
    """The parse cache of a warm process: the same bundle with an edited config.json runs
    the edit, not what was parsed before."""
    ids = [new_id() for _ in range(3)]
    codes = []
    for cid, code in zip(ids, (3, 3, 5)):
        bundle.sh(f"exit {code}").write()
        codes.append(libcontainer.run(bundle.path, cid, root=bundle.root))
    assert codes == [3, 3, 5]
    with open(os.path.join(bundle.path, "config.json"), "a") as f:
        f.write("{")  # no longer JSON
    with pytest.raises(libcontainer.ConfigError):
        libcontainer.run(bundle.path, new_id(), root=bundle.root)
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path, bundle.mark)


def test_cgroup_parents_removed_between_plan_and_make():
    """make() skips the parents that plan() saw (one mkdir per hierarchy, not one per
    level); parents another container's delete removed meanwhile are made again, and then
    belong to this container."""
    from conftest import need_root
    from libcontainer import cgroups

    need_root()
    top = new_id()
    path = f"/{top}/mid/leaf"
    first = cgroups.Manager.plan("x", path)
    assert first.make()
    m = cgroups.Manager.plan("y", f"/{top}/mid/leaf2")
    assert not any(top in d and not d.endswith("leaf2") for d in m.created)  # they exist
    first.destroy()  # removes /top/mid/leaf, /top/mid and /top everywhere
    try:
        assert m.make()
        assert all(os.path.isdir(d) for d in m._dirs())
        assert any(d.endswith(f"/{top}") for d in m.created)
    finally:
        m.destroy()
    assert not [d for d in m._dirs() + m.created if os.path.exists(d)]
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        assert top not in dirs
        if base.count("/") > 4:
            dirs[:] = []


def test_runner_run_imports_nothing_it_does_not_use(bundle):
    """`runner run` of the default config loads none of the heavy stdlib modules (re alone
    is ~10 ms of a start): jsonio instead of json, no typing, logging only at a library
    warning, threading only for a background cleanup."""
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    site = os.path.dirname(os.path.dirname(libcontainer.__file__))
    deps = os.path.dirname(os.path.dirname(__import__("cffi").__file__))
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{site!r}, {deps!r}]
        from runner.__main__ import main
        code = main(["--root", {bundle.root!r}, "run", "-b", {bundle.path!r}, {cid!r}])
        heavy = {{"re", "typing", "logging", "threading", "json", "enum", "dataclasses",
                  "subprocess", "pyroute2", "contextlib", "inspect", "ast",
                  "libcontainer._seccomp"}}  # libseccomp: a config with seccomp only
        print(code, sorted(heavy & set(sys.modules)))
        """)
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(None, 1) == ["0", "[]\n"], r.stdout
    assert_nothing_left(bundle)


def test_create_takes_a_request_or_the_keywords(bundle, tmp_path):
    """One value says what a create is asked (the CLI builds it too); the keyword form
    is the same request, and a request with more keywords beside it is refused."""
    bundle.sh("sleep 100").write()
    pid_file = str(tmp_path / "pid")
    req = libcontainer.CreateRequest(bundle.path, new_id(), root=bundle.root,
                                     pid_file=pid_file, stdio=(None, None, None))
    assert "pid_file=" in repr(req) and req.new_keyring and not req.start_now
    with pytest.raises(libcontainer.InvalidArgument, match="CreateRequest"):
        libcontainer.create(req, root=bundle.root)
    with pytest.raises(TypeError):
        libcontainer.CreateRequest(bundle.path, "x", no_such_option=1)
    c = libcontainer.create(req)
    try:
        assert c.status() == "created"
        with open(pid_file) as f:
            assert int(f.read()) == c.pid
    finally:
        c.delete(force=True)
    cid = new_id()
    bundle.sh("exit 7").write()
    assert libcontainer.run(bundle.path, cid, root=bundle.root) == 7  # the keyword form
    assert libcontainer.run(libcontainer.CreateRequest(bundle.path, new_id(),
                                                       root=bundle.root)) == 7
    assert_nothing_left(bundle)
