"""`runner sandbox`: isolate-style results for shell-based CI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import REPO, ROOTFS, RUNNER, need_root


def sandbox(*args, input=None):
    return subprocess.run(RUNNER + ["sandbox", *args], capture_output=True, input=input,
                          cwd=REPO, timeout=60)


@pytest.fixture(autouse=True)
def _root():
    need_root()
    if not os.path.exists(os.path.join(ROOTFS, "bin", "busybox")):
        pytest.skip("no busybox rootfs: run `make rootfs`")


def _ours() -> list:
    try:
        return os.listdir("/run/runner-sandbox")
    except FileNotFoundError:
        return []


def test_passes_output_through_and_summarises(tmp_path):
    r = sandbox(ROOTFS, "--", "sh", "-c", "echo out; echo err >&2")
    assert r.returncode == 0
    assert r.stdout == b"out\n"
    assert r.stderr.startswith(b"err\nOK (") and b"sec wall)" in r.stderr


def test_json_and_meta(tmp_path):
    meta = tmp_path / "meta"
    r = sandbox("--time", "0.5", "--wall", "5", "--json", "--meta", str(meta), ROOTFS, "--",
                "sh", "-c", "echo started; while :; do :; done")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["status"] == "TO" and out["timed_out"] and out["stdout"] == "started\n"
    assert out["signal"] == 9 and out["exit_code"] is None
    lines = dict(line.split(":", 1) for line in meta.read_text().splitlines())
    assert lines["status"] == "TO" and lines["exitsig"] == "9" and lines["killed"] == "1"
    assert float(lines["time"]) >= 0.5 and "time-wall" in lines and "max-rss" in lines


def test_limits_files_stdin_and_env(tmp_path):
    src = tmp_path / "prog.sh"
    src.write_text("read x; echo \"$GREETING $x\"; cat /proc/self/limits | grep 'open files'\n")
    r = sandbox("--memory", "32m", "--pids", "8", "--open-files", "40", "-e", "GREETING=hi",
                "--file", f"prog.sh={src}", "--stdin", "-", "--json", ROOTFS, "--",
                "sh", "prog.sh", input=b"there\n")
    out = json.loads(r.stdout)
    assert out["status"] == "OK", out
    assert out["stdout"].splitlines()[0] == "hi there"
    assert out["stdout"].split()[-3:-1] == ["40", "40"]
    r = sandbox("--memory", "32m", "--json", ROOTFS, "--", "tail", "/dev/zero")
    out = json.loads(r.stdout)
    assert out["status"] == "ML" and out["oom_killed"] and r.returncode == 1


def test_bad_input_names_the_flag_and_leaves_nothing():
    before = _ours()
    for args, word in ((["--memory", "lots", ROOTFS, "true"], "limits.memory"),
                       (["--time", "x", ROOTFS, "true"], "--time"),
                       (["--pids", "0", ROOTFS, "true"], "limits.pids"),
                       ([ROOTFS], "expects"),
                       (["/nonexistent-image-dir", "true"], "image"),
                       (["--file", "a", ROOTFS, "true"], "--file")):
        r = sandbox(*args)
        assert r.returncode == 1 and word.encode() in r.stderr, (args, r.stderr)
    assert _ours() == before


def test_the_sandbox_failing_is_xx(tmp_path):
    """The command never ran because the sandbox could not be made (here the image's /proc
    is a file: proc cannot be mounted on it): isolate's XX, in --json and the meta file,
    exit status 2 (1 is the command's failure), and nothing left behind."""
    root = tmp_path / "rootfs"
    shutil.copytree(ROOTFS, root, symlinks=True)
    shutil.rmtree(root / "proc")
    (root / "proc").write_text("not a directory\n")
    meta = tmp_path / "meta"
    before = _ours()
    r = sandbox("--json", "--meta", str(meta), str(root), "--", "true")
    assert r.returncode == 2, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "XX" and out["exit_code"] is None and out["signal"] is None
    assert out["message"].startswith("the sandbox failed: ") and "proc" in out["message"]
    lines = dict(line.split(":", 1) for line in meta.read_text().splitlines())
    assert lines["status"] == "XX" and "exitcode" not in lines and "exitsig" not in lines
    r = sandbox(str(root), "--", "true")
    assert r.returncode == 2 and r.stderr.startswith(b"the sandbox failed: ")
    assert _ours() == before
