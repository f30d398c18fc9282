"""The runtime's own diagnostics never reach the container's stdio (issue 17, point 3).
Engines run the runtime with the container's pipes as its stdio and `--log FILE
--log-format json`: a warning goes to that log as runc's logrus line
({"level","msg","time"}), an error to the log and to stderr, as runc does. Checked side by
side with runc on the same bundle."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, new_id

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
TEXT_LINE = re.compile(r'^time="([^"]+)" level=(\w+) msg="(.*)"$')


def unknown_cap(bundle):
    """A config whose run warns on any host: a capability no kernel defines (config.md:
    MUST be logged, SHOULD NOT fail)."""
    bundle.process["capabilities"] = {
        "bounding": ["CAP_KILL", "CAP_FLY"], "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL"]}
    bundle.sh("echo out; echo err >&2")


def runner_cmd(bundle, *args) -> list:
    return RUNNER + ["--root", bundle.root, *args]


def log_lines(path) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("verb", ["run", "create"])
def test_warning_goes_to_the_json_log_not_the_container_stdio(bundle, tmp_path, verb):
    unknown_cap(bundle)
    log = tmp_path / "log.json"
    if verb == "run":
        cid = new_id()
        bundle.last_id = cid
        bundle.write()
        r = bundle.runner("--log", str(log), "--log-format", "json", "run", "--bundle",
                          bundle.path, cid)
        assert r.returncode == 0, r.stderr
        out, err = r.stdout, r.stderr
    else:
        # as containerd's shim calls it: create with the container's stdio as its own
        cid = new_id()
        bundle.last_id = cid
        bundle.write()
        with open(tmp_path / "c.out", "w+") as o, open(tmp_path / "c.err", "w+") as e:
            r = subprocess.run(runner_cmd(bundle, "--log", str(log), "--log-format", "json",
                                                 "create", "--bundle", bundle.path, cid),
                               stdin=subprocess.DEVNULL, stdout=o, stderr=e, timeout=60, cwd=REPO)
            assert r.returncode == 0, (tmp_path / "c.err").read_text()
            bundle.runner("start", cid, check=True)
            for _ in range(200):
                if '"stopped"' in bundle.runner("state", cid).stdout:
                    break
                time.sleep(0.02)
            o.seek(0)
            e.seek(0)
            out, err = o.read(), e.read()
        bundle.runner("delete", cid, check=True)
    assert out == "out\n"
    assert err == "err\n", err  # the container's own, nothing of the runtime's
    lines = log_lines(log)
    assert len(lines) == 1, lines
    line = lines[0]
    assert sorted(line) == ["level", "msg", "time"]
    assert line["level"] == "warning"
    assert "unknown capability 'CAP_FLY'" in line["msg"]
    assert RFC3339.match(line["time"]), line
    assert_nothing_left(bundle)


def test_text_log_and_without_log(bundle, tmp_path):
    unknown_cap(bundle)
    log = tmp_path / "log.txt"
    r = bundle.run(None)
    assert r.returncode == 0
    # no --log: the terminal is the only place to say it
    assert "runner: warning: process.capabilities.bounding[1]: unknown capability" in r.stderr
    cid = new_id()
    bundle.last_id = cid
    r = bundle.runner("--log", str(log), "run", "--bundle", bundle.path, cid)
    assert r.returncode == 0
    assert r.stderr == "err\n"
    (line,) = log.read_text().splitlines()
    m = TEXT_LINE.match(line)
    assert m, line
    assert m.group(2) == "warning" and "CAP_FLY" in m.group(3)
    assert RFC3339.match(m.group(1))
    assert_nothing_left(bundle)


def test_error_goes_to_the_log_and_stderr(bundle, tmp_path):
    bundle.config["root"]["path"] = "nowhere"
    log = tmp_path / "log.json"
    cid = new_id()
    bundle.write()
    bundle.last_id = cid
    r = bundle.runner("--log", str(log), "--log-format", "json", "run", "--bundle",
                      bundle.path, cid)
    assert r.returncode != 0
    (line,) = log_lines(log)
    assert line["level"] == "error"
    assert r.stderr == f"runner: {line['msg']}\n"
    assert_nothing_left(bundle)


def test_debug_remarks_go_to_the_log_only_with_debug(bundle, tmp_path):
    """An ambient capability without inheritable (runc's `spec` default): said at debug
    level only, in the log when there is one."""
    bundle.process["capabilities"] = {k: ["CAP_KILL"] for k in
                                      ("bounding", "effective", "permitted", "ambient")}
    bundle.set_args("true")
    log = tmp_path / "log.json"
    for debug in ([], ["--debug"]):
        cid = new_id()
        bundle.last_id = cid
        bundle.write()
        r = bundle.runner(*debug, "--log", str(log), "--log-format", "json", "run",
                          "--bundle", bundle.path, cid)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
    lines = log_lines(log)
    assert [line["level"] for line in lines] == ["debug"], lines
    assert "process.capabilities.ambient: CAP_KILL" in lines[0]["msg"]
    assert_nothing_left(bundle)


@pytest.fixture
def runc_exe():
    exe = shutil.which("runc")
    if exe is None:
        pytest.skip("runc is not installed (the Makefile's test packages install it)")
    return exe


def test_same_log_lines_as_runc(bundle, tmp_path, runc_exe):
    """runc's `spec` config, plus a capability no kernel has: both runtimes print nothing
    of their own on the container's stdio, and log one warning line of the same shape."""
    subprocess.run([runc_exe, "spec"], cwd=tmp_path, check=True)
    with open(tmp_path / "config.json") as f:
        theirs = json.load(f)
    caps = theirs["process"]["capabilities"]
    assert "ambient" in caps and "inheritable" not in caps  # what the remark is about
    caps["bounding"].append("CAP_FLY")
    bundle.config["process"]["capabilities"] = caps
    bundle.config["process"]["terminal"] = False
    bundle.sh("echo out")
    bundle.write()
    results = {}
    for name in ("runc", "runner"):
        log = tmp_path / f"{name}.json"
        cid = new_id()
        if name == "runc":
            cmd = [runc_exe, "--root", str(tmp_path / "runc-state"), "--log", str(log),
                   "--log-format", "json", "run", "--bundle", bundle.path, cid]
        else:
            bundle.last_id = cid
            cmd = runner_cmd(bundle, "--log", str(log), "--log-format", "json", "run",
                                    "--bundle", bundle.path, cid)
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=60, cwd=REPO)
        assert r.returncode == 0, (name, r.stderr)
        results[name] = (r.stdout, r.stderr, log_lines(log))
    for name, (out, err, lines) in results.items():
        assert (out, err) == ("out\n", ""), name
        assert [sorted(line) for line in lines] == [["level", "msg", "time"]], (name, lines)
        assert lines[0]["level"] == "warning" and "CAP_FLY" in lines[0]["msg"], name
    assert_nothing_left(bundle)
