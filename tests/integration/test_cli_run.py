"""The CLI around `run`: `python -m runner` and the `runner` script, --version, `runner spec`
(a default config that runs), and `pip install .` of a clone into a fresh venv."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, new_id

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
    assert not os.path.exists(bundle.root) or not os.listdir(bundle.root)


def test_run_help(tmp_path):
    r = subprocess.run(RUNNER + ["run", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    for flag in ("--bundle", "--no-pivot", "--preserve-fds"):
        assert flag in r.stdout


def test_pip_install_of_a_clone_gives_a_working_runner(tmp_path, bundle):
    """A clone of the repository installed with pip into a fresh venv of the system's
    python (the shim is built by the package build; no network: the build dependencies
    come from this venv). The `runner` it installs starts Python with -I -S."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True)
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    site = subprocess.run([sys.executable, "-c", "import cffi, os; print(os.path.dirname(os.path.dirname(cffi.__file__)))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "PYTHONPATH": site, "PIP_NO_INDEX": "1"}
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-build-isolation",
                        "--no-deps", str(clone)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    # the dependencies (cffi, pyroute2) as if installed: this venv's, by a .pth
    ver = "python%d.%d" % sys.version_info[:2]
    (venv / "lib" / ver / "site-packages" / "deps.pth").write_text(site + "\n")
    runner = venv / "bin" / "runner"
    with open(runner) as f:
        assert f.readline() == "#!/bin/sh\n"  # pip left the launcher as it is
    r = subprocess.run([str(runner), "--version"], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    _version_ok(r.stdout)
    bundle.sh("echo installed-ok; sleep 1").write()
    cid = new_id()
    bundle.last_id = cid
    p = subprocess.Popen([str(runner), "--root", bundle.root, "run", "-b", bundle.path, cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        assert p.stdout.readline() == "installed-ok\n"  # the container runs: python is up
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")[:-1]
    finally:
        out, err = p.communicate(timeout=30)
    # the shell line exec'd the venv's python, isolated and without site
    assert argv[:4] == [str(venv / "bin" / "python3").encode(), b"-I", b"-S", str(runner).encode()]
    assert p.returncode == 0, err
    assert_nothing_left(bundle)
