"""The CLI around `run`: `python -m runner` and the `runner` script, --version, `runner spec`
(a default config that runs), and `pip install .` of a clone into a fresh venv: its ELF
launchers (csrc/launcher.c) through a symlink, for an unprivileged user, with arguments and
exit statuses passed unchanged, falling back to the interpreter's defaults."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile

import pytest
from conftest import (REPO, RUNNER, assert_nothing_left, need_root, new_id,
                      state_entries)

SCRIPT = os.path.join(os.path.dirname(sys.executable), "runner")


def _version_ok(out: str) -> None:
    lines = out.splitlines()
    assert re.fullmatch(r"runner version \d+\.\d+\.\d+", lines[0]), out
    assert lines[1] == "spec: 1.3.0"
    assert re.fullmatch(r"libseccomp: \d+\.\d+\.\d+", lines[2]), out


@pytest.mark.parametrize("cmd", [RUNNER, [SCRIPT]], ids=["python -m runner", "runner"])
def test_version(cmd):
    for flag in ("--version", "-v"):
        r = subprocess.run(cmd + [flag], capture_output=True, text=True, cwd="/")
        assert r.returncode == 0, r.stderr
        _version_ok(r.stdout)


def test_libseccomp_version_is_the_systems():
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libseccomp2"],
                         capture_output=True, text=True).stdout
    if not out:
        pytest.skip("no dpkg libseccomp2")
    r = subprocess.run(RUNNER + ["--version"], capture_output=True, text=True, cwd=REPO)
    assert out.startswith(r.stdout.splitlines()[2].split()[1])


def test_runner_script_runs_a_container(bundle):
    bundle.sh("echo from-script; exit 5").write()
    cid = new_id()
    bundle.last_id = cid
    r = subprocess.run([SCRIPT, "--root", bundle.root, "run", "-b", bundle.path, cid],
                       capture_output=True, text=True, cwd="/")
    assert (r.returncode, r.stdout) == (5, "from-script\n"), r.stderr
    assert_nothing_left(bundle)


def test_run_uses_the_current_directory_as_bundle(bundle):
    bundle.sh("echo here").write()
    cid = new_id()
    bundle.last_id = cid
    r = subprocess.run(RUNNER + ["--root", bundle.root, "run", cid], capture_output=True,
                       text=True, cwd=bundle.path, env={**os.environ, "PYTHONPATH": REPO})
    assert r.stdout == "here\n", r.stderr


def test_spec_writes_a_default_config_that_runs(bundle):
    os.unlink(os.path.join(bundle.path, "config.json")) if os.path.exists(
        os.path.join(bundle.path, "config.json")) else None
    r = bundle.runner("spec", "--bundle", bundle.path)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(bundle.path, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["ociVersion"] == "1.3.0"
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    assert cfg["process"]["args"] == ["sh"]
    assert {n["type"] for n in cfg["linux"]["namespaces"]} == {"pid", "network", "ipc", "uts", "mount"}
    assert cfg["process"]["capabilities"]["bounding"] == ["CAP_AUDIT_WRITE", "CAP_KILL",
                                                          "CAP_NET_BIND_SERVICE"]
    # run it as written, only without a terminal (the test has none) and with a command
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "hostname; grep CapEff /proc/self/status"]
    with open(os.path.join(bundle.path, "config.json"), "w") as f:
        json.dump(cfg, f)
    cid = new_id()
    bundle.last_id = cid
    r = bundle.runner("run", "-b", bundle.path, cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "runner"
    assert_nothing_left(bundle)


def test_spec_refuses_to_overwrite(bundle):
    bundle.write()
    r = bundle.runner("spec", "--bundle", bundle.path)
    assert r.returncode == 1
    assert "already exists" in r.stderr


def test_spec_into_a_missing_directory_names_the_flag(tmp_path):
    r = subprocess.run(RUNNER + ["spec", "--bundle", str(tmp_path / "nope")], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 1
    assert r.stderr.startswith("runner: --bundle")


def test_unknown_verb_and_flag(tmp_path):
    r = subprocess.run(RUNNER + ["frobnicate"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "frobnicate" in r.stderr
    r = subprocess.run(RUNNER + ["--frob", "run"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "--frob" in r.stderr


def test_rootless_flag_takes_runcs_values(bundle):
    """--rootless true|false|auto is accepted as runc spells it; anything else is an error
    naming the flag, before anything is made."""
    for value in ("true", "false", "auto"):
        r = bundle.runner("--rootless", value, "list")
        assert r.returncode == 0, r.stderr
    r = bundle.runner("--rootless", "maybe", "run", "--bundle", bundle.path, new_id())
    assert r.returncode == 1 and "--rootless" in r.stderr and "'maybe'" in r.stderr, r.stderr
    assert not os.path.exists(bundle.root) or not state_entries(bundle.root)


def test_run_help(tmp_path):
    r = subprocess.run(RUNNER + ["run", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    for flag in ("--bundle", "--no-pivot", "--preserve-fds"):
        assert flag in r.stdout


class Installed:
    """`pip install` of a clone into a fresh venv of the system's python, in a directory
    others can reach (the unprivileged user's test runs it)."""

    def __init__(self, top: str):
        self.top = top
        self.venv = os.path.join(top, "venv")
        self.bin = os.path.join(self.venv, "bin")
        self.runner = os.path.join(self.bin, "runner")
        self.cni = os.path.join(self.bin, "runner-cni")
        ver = "python%d.%d" % sys.version_info[:2]
        self.site = os.path.join(self.venv, "lib", ver, "site-packages")
        # the dependencies (cffi, pyroute2) as if installed: this venv's
        self.deps = os.path.dirname(os.path.dirname(importlib.util.find_spec("cffi").origin))
        self.in_wheel: dict = {}  # the commands as the wheel holds them


@pytest.fixture(scope="module")
def installed():
    """A clone of the repository installed with pip into a fresh venv of the system's
    python (the shim and the launchers are built by the package build; no network: the
    build dependencies come from this venv)."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    top = tempfile.mkdtemp(prefix="runner-pip-", dir="/tmp")
    os.chmod(top, 0o755)
    try:
        inst = Installed(top)
        clone = os.path.join(top, "clone")
        subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", inst.venv], check=True)
        env = {**os.environ, "PYTHONPATH": inst.deps, "PIP_NO_INDEX": "1"}
        # `pip install .` in two steps (what it does itself), to look at the wheel between
        pip = [os.path.join(inst.bin, "pip"), "-q"]
        wheels = os.path.join(top, "wheels")
        r = subprocess.run(pip + ["wheel", "--no-build-isolation", "--no-deps", "-w", wheels,
                                  clone], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        (wheel,) = os.listdir(wheels)
        with zipfile.ZipFile(os.path.join(wheels, wheel)) as z:
            inst.in_wheel = {n.rpartition("/")[2]: z.read(n) for n in z.namelist()
                             if n.rpartition("/")[0].endswith(".data/scripts")}
        r = subprocess.run(pip + ["install", "--no-deps", os.path.join(wheels, wheel)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(inst.site, "deps.pth"), "w") as f:
            f.write(inst.deps + "\n")
        yield inst
    finally:
        shutil.rmtree(top)


def _is_elf(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _run_and_look(runner: str, bundle, *extra) -> list:
    """`runner run` of a container that prints and waits a moment: → the argv of the
    process runner became (the interpreter), read while the container runs."""
    bundle.sh("echo installed-ok; sleep 1").write()
    cid = new_id()
    bundle.last_id = cid
    # the plain path's exec: a warm server's served run (RUNNER_TEST_WARM=1) runs as
    # warm-spawn with the same argv instead (runner/warm_spawn.py)
    p = subprocess.Popen([runner, "--root", bundle.root, "run", "-b", bundle.path, *extra, cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                         env=dict(os.environ, RUNNER_WARM="0"))
    try:
        assert p.stdout.readline() == "installed-ok\n", p.stderr.read()  # python is up
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
    finally:
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert_nothing_left(bundle)
    return argv


def test_pip_install_of_a_clone_gives_a_working_runner(installed, bundle):
    """The commands pip installs are the ELF launchers built from csrc/launcher.c (no shell
    in between), `runner` runs a container and `runner-cni` answers VERSION."""
    assert _is_elf(installed.runner) and _is_elf(installed.cni)
    for name, path in (("runner", installed.runner), ("runner-cni", installed.cni)):
        with open(path, "rb") as f:
            assert f.read() == installed.in_wheel[name]  # pip copied them as they are
    r = subprocess.run([installed.runner, "--version"], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    _version_ok(r.stdout)
    argv = _run_and_look(installed.runner, bundle, "--no-new-keyring")
    # the launcher exec'd the venv's python (its symlink, unresolved), isolated and without
    # site, with a stub that runs bin/boot.py from the launcher, then its own path and the
    # arguments as given: what `ps` shows, the stub short enough not to hide them
    assert argv[:4] == [os.path.join(installed.bin, "python3"), "-I", "-S", "-c"]
    assert argv[4].startswith("exec(") and len(argv[4]) < 100, argv[4]
    assert argv[5:] == [installed.runner, "--root", bundle.root, "run", "-b", bundle.path,
                        "--no-new-keyring", bundle.last_id]
    r = subprocess.run([installed.cni], input='{"cniVersion": "1.0.0"}', capture_output=True,
                       text=True, env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "1.0.0" in json.loads(r.stdout)["supportedVersions"]


def test_installed_runner_through_a_symlink_elsewhere(installed, bundle, tmp_path):
    """A symlink to it in another directory (as in /usr/local/bin) still starts the venv's
    python: the launcher finds it next to the file it really is, through /proc/self/exe.
    The CLI's argv[0] is the path it was run by, as a script's would be."""
    local = tmp_path / "usr-local" / "bin"
    local.mkdir(parents=True)
    os.symlink(installed.runner, local / "runner")
    env = {**os.environ, "PATH": f"{local}:/usr/bin:/bin"}
    r = subprocess.run(["runner", "--version"], capture_output=True, text=True, cwd="/",
                       env=env)
    assert r.returncode == 0, r.stderr
    _version_ok(r.stdout)
    argv = _run_and_look(str(local / "runner"), bundle)
    assert argv[0] == os.path.join(installed.bin, "python3")
    assert argv[5] == str(local / "runner")


@pytest.mark.parametrize("args", [
    ["state", " a  b "], [""], ["state", ""], ["delete", "x y", ""], ["--root", "", "list"],
    ["spec", "--bundle", "/nonexistent dir/ü"], ["run", "--help"],
], ids=repr)
def test_installed_runner_passes_argv_and_the_exit_status_unchanged(installed, args):
    """Empty arguments, spaces, non-ASCII: the installed command answers exactly as
    `python -m runner` does (output and exit status)."""
    ours = subprocess.run([installed.runner, *args], capture_output=True, text=True, cwd="/")
    ref = subprocess.run(RUNNER + args, capture_output=True, text=True, cwd="/")
    assert (ours.returncode, ours.stdout, ours.stderr) == (ref.returncode, ref.stdout,
                                                           ref.stderr)


def test_installed_runner_passes_the_containers_exit_status(installed, bundle):
    bundle.sh("exit 7").write()
    cid = new_id()
    bundle.last_id = cid
    r = subprocess.run([installed.runner, "--root", bundle.root, "run", "-b", bundle.path, cid],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 7, r.stderr
    assert_nothing_left(bundle)


def test_installed_runner_falls_back_to_the_interpreters_defaults(installed, tmp_path):
    """Packages it cannot find without site (here: only on PYTHONPATH, the launcher copied
    into another venv) are found by running again with the interpreter's defaults; the
    directory it is started in is not searched for modules even then."""
    other = tmp_path / "other"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(other)], check=True)
    shutil.copy2(installed.runner, other / "bin" / "runner")
    decoy = tmp_path / "cwd" / "runner"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('the working directory was searched')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{installed.site}:{installed.deps}"}
    r = subprocess.run([str(other / "bin" / "runner"), "--version"], capture_output=True,
                       text=True, cwd=decoy.parent, env=env)
    assert r.returncode == 0, r.stderr
    _version_ok(r.stdout)


def _installed_python(launcher: str) -> str:
    """The interpreter a launcher was built for (setup.py writes it into its text)."""
    with open(launcher, "rb") as f:
        m = re.search(rb"INSTALLED_PYTHON = '([^'\n]+)'", f.read())
    assert m, "the launcher names no INSTALLED_PYTHON"
    return m.group(1).decode()


def test_installed_runner_without_an_interpreter_says_so(installed, tmp_path):
    """No python next to it, its installation's gone, none on PATH: a message naming what
    was looked for, status 127 (a shell's for a command it cannot run)."""
    home = _installed_python(installed.runner)
    gone = "/nonexistent-" + "x" * (len(home) - len("/nonexistent-"))
    lone = tmp_path / "runner"
    with open(installed.runner, "rb") as f:
        data = f.read()
    assert data.count(home.encode()) == 2  # the C string, and the text's assignment
    lone.write_bytes(data.replace(home.encode(), gone.encode()))
    lone.chmod(0o755)
    r = subprocess.run([str(lone), "--version"], capture_output=True, text=True,
                       env={"PATH": str(tmp_path)})
    assert r.returncode == 127
    assert r.stdout == ""
    assert r.stderr.startswith("runner: cannot run a Python interpreter (python3 or python "
                               f"next to {lone}, {gone}, python3 on PATH)"), r.stderr


def test_installed_commands_copied_elsewhere(installed, bundle, tmp_path):
    """Copied, not linked (issue 17, point 6): `cp runner /usr/local/bin/` for an engine's
    runtimes entry, `cp runner-cni /opt/cni/bin/` as every CNI plugin is installed. With
    no python next to the copy, the launcher runs its installation's own interpreter (not
    the system's python3 on PATH, which has no libcontainer): a container runs, and the
    plugin makes and removes a network attachment."""
    from cni_helpers import Netns, allocation_files, ok, veths

    local, cni_bin = tmp_path / "usr-local-bin", tmp_path / "opt-cni-bin"
    local.mkdir()
    cni_bin.mkdir()
    shutil.copy2(installed.runner, local / "runner")
    shutil.copy2(installed.cni, cni_bin / "runner-cni")
    argv = _run_and_look(str(local / "runner"), bundle)
    assert argv[0] in (os.path.join(installed.bin, "python"),
                       os.path.join(installed.bin, "python3")), argv
    assert argv[0] == _installed_python(installed.runner)
    assert argv[5] == str(local / "runner")
    # the plugin, called as a runtime calls it: ADD then DEL in a throw-away namespace
    host, ctr = Netns(), Netns()
    try:
        conf = {"cniVersion": "1.0.0", "name": "copied", "type": "runner-cni",
                "bridge": "cp" + uuid.uuid4().hex[:8], "stateDir": str(tmp_path / "cni-state"),
                "ipam": {"type": "host-local", "subnet": "10.79.0.0/24"}}
        exe = [str(cni_bin / "runner-cni")]
        res = ok(exe, "ADD", conf, host, cid="c1", netns=ctr.path,
                 env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        assert res["ips"][0]["address"] == "10.79.0.2/24"
        assert "eth0" in ctr.links()
        ok(exe, "DEL", conf, host, cid="c1", netns=ctr.path)
        assert veths(host) == [] and allocation_files(str(tmp_path / "cni-state")) == []
    finally:
        ctr.close()
        host.close()


def test_installed_runner_copied_next_to_another_python(installed, bundle, tmp_path):
    """A copy next to some other python (a /usr/local/bin with its own python3): that one
    lacks our packages, and the installation's interpreter is run instead (before falling
    back to the other one's defaults)."""
    local = tmp_path / "bin"
    local.mkdir()
    os.symlink("/usr/bin/python3", local / "python3")
    shutil.copy2(installed.runner, local / "runner")
    r = subprocess.run([str(local / "runner"), "--version"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin"}, cwd="/")
    assert r.returncode == 0, r.stderr
    _version_ok(r.stdout)
    # the process became the installation's interpreter (exec'd in place: same pid)
    argv = _run_and_look(str(local / "runner"), bundle)
    assert argv[0] in (os.path.join(installed.bin, "python"),
                       os.path.join(installed.bin, "python3")), argv
    assert argv[1:3] == ["-I", "-S"] and argv[5] == str(local / "runner")


def test_installed_commands_for_an_unprivileged_user(installed, rootfs_template):
    """A user with no rights on the venv beyond reading it runs `runner` (a rootless
    container, its state under a directory of its own) and `runner-cni`."""
    import pwd

    need_root()
    name = "rl" + uuid.uuid4().hex[:6] + "p"
    home = os.path.join(installed.top, "home-" + name)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh",
                    name], check=True, capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        os.mkdir(home, 0o700)
        bundle = os.path.join(home, "bundle")
        os.mkdir(bundle)
        subprocess.run(["cp", "-a", rootfs_template, os.path.join(bundle, "rootfs")],
                       check=True)
        subprocess.run(["chown", "-R", f"{pw.pw_uid}:{pw.pw_gid}", home], check=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}

        def as_user(*args, extra_env=(), **kw):
            return subprocess.run(args, capture_output=True, text=True, cwd=home,
                                  env={**env, **dict(extra_env)},
                                  user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                                  timeout=60, **kw)

        r = as_user(installed.runner, "spec", "--rootless", "--bundle", bundle)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        cfg["process"].update(terminal=False, args=["sh", "-c", "id -u; echo as-user"])
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        root = os.path.join(home, "state")
        r = as_user(installed.runner, "--root", root, "run", "-b", bundle, new_id())
        assert (r.returncode, r.stdout) == (0, "0\nas-user\n"), r.stderr
        assert os.listdir(root) == []
        r = as_user(installed.cni, input='{"cniVersion": "1.0.0"}',
                    extra_env={"CNI_COMMAND": "VERSION"})
        assert r.returncode == 0, r.stderr
        assert "1.0.0" in json.loads(r.stdout)["supportedVersions"]
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    with open("/etc/passwd") as f:
        assert not any(line.startswith(name + ":") for line in f)


def test_a_process_limit_names_the_limits_that_apply(bundle):
    """clone3 of the init failing with EAGAIN (here: a pids cgroup of pids.max 1 that the
    runner itself fills) says what could not be made and which limits apply, and leaves
    nothing behind."""
    need_root()
    from libcontainer import cgroups

    mnt = cgroups.detect().v1.get("pids")
    if not mnt:
        pytest.skip("no v1 pids hierarchy on this host")
    bundle.sh("echo never").write()
    cid = new_id()
    bundle.last_id = cid
    cg = os.path.join(mnt, f"test-eagain-{uuid.uuid4().hex[:8]}")
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, "pids.max"), "w") as f:
            f.write("1")
        r = subprocess.run(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh",
                            SCRIPT, "--root", bundle.root, "run", "-b", bundle.path, cid],
                           capture_output=True, text=True, cwd="/", timeout=60)
    finally:
        _rmdir_when_empty(cg)
    assert r.returncode == 1 and "never" not in r.stdout, (r.returncode, r.stdout, r.stderr)
    msg = r.stderr.strip()
    assert msg.startswith("runner: cannot make the container's init process: clone3: "
                          "Resource temporarily unavailable (a process limit is reached"), msg
    assert f"pids cgroup {cg}: 1 processes of pids.max 1" in msg, msg
    assert "RLIMIT_NPROC" in msg and "kernel.pid_max" in msg and "kernel.threads-max" in msg
    assert_nothing_left(bundle)


def _rmdir_when_empty(d: str) -> None:
    """rmdir a cgroup the test made, waiting up to 2 s for a process to leave it (EBUSY);
    raises if one stays (the runner left something of it there)."""
    import errno
    import time

    for _ in range(200):
        try:
            os.rmdir(d)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    os.rmdir(d)
