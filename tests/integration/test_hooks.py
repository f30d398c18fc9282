"""OCI hooks: each stage at its point, in the namespace the spec says, with the state on
stdin; failures and timeouts as the spec says, leaving nothing behind."""
from __future__ import annotations

import json
import os
import stat

from conftest import REPO, assert_nothing_left, new_id
from test_lifecycle import detached, state, wait_status

HOST_HOOK = """#!/bin/sh
# stage, the state's status/pid, and where we run (mount namespace)
read -r st
echo "$1 $(echo "$st" | tr -d ' ' | sed -e 's/.*"status":"\\([a-z]*\\)".*/\\1/') $(readlink /proc/self/ns/mnt) $HOOK_ENV" >> "$2"
"""


def _script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def _hook(path, stage, log, **kw):
    h = {"path": path, "args": [os.path.basename(path), stage, log], "env": ["HOOK_ENV=e-" + stage]}
    h.update(kw)
    return h


def test_every_stage_in_order_and_namespace(bundle):
    bundle.config["root"]["readonly"] = False
    log = os.path.join(bundle.path, "hooks.log")
    host = _script(os.path.join(bundle.path, "hook.sh"), HOST_HOOK)
    # startContainer's path resolves in the container: a busybox script in the rootfs
    _script(os.path.join(bundle.rootfs, "hook.sh"),
            '#!/bin/sh\nread -r st\necho "$1 x $(readlink /proc/self/ns/mnt) $HOOK_ENV" >> /hooks.log\n')
    bundle.config["hooks"] = {
        "prestart": [_hook(host, "prestart", log)],
        "createRuntime": [_hook(host, "createRuntime", log)],
        "createContainer": [_hook(host, "createContainer", log)],
        "startContainer": [_hook("/hook.sh", "startContainer", "/unused")],
        "poststart": [_hook(host, "poststart", log)],
        "poststop": [_hook(host, "poststop", log)],
    }
    bundle.sh("sleep 30")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    assert detached(bundle, "create", "--bundle", bundle.path, cid).returncode == 0
    init = state(bundle, cid)["pid"]
    container_mnt = os.readlink(f"/proc/{init}/ns/mnt")
    host_mnt = os.readlink("/proc/self/ns/mnt")
    bundle.runner("start", cid, check=True)
    wait_status(bundle, cid, "running")
    bundle.runner("delete", "--force", cid, check=True)
    lines = [l.split() for l in open(log).read().splitlines()]
    assert [l[0] for l in lines] == ["prestart", "createRuntime", "createContainer",
                                     "poststart", "poststop"]
    where = {l[0]: l[2] for l in lines}
    assert where["prestart"] == where["createRuntime"] == where["poststart"] == host_mnt
    assert where["createContainer"] == container_mnt
    assert all(l[3] == "e-" + l[0] for l in lines)
    # prestart: "created" (runtime-spec 1.0 ran it at start; crun gives it so), createRuntime
    # "creating" (test_hook_state_env.py)
    assert [l[1] for l in lines] == ["created", "creating", "created", "running", "stopped"]
    inner = open(os.path.join(bundle.rootfs, "hooks.log")).read().split()
    assert inner[0] == "startContainer" and inner[2] == container_mnt and inner[3] == "e-startContainer"
    assert_nothing_left(bundle)


def test_failing_prestart_fails_create_and_leaves_nothing(bundle):
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    r = bundle.run()
    assert r.returncode == 1
    assert "hooks.createRuntime[0]" in r.stderr and "status 1" in r.stderr
    assert_nothing_left(bundle)


def test_failing_create_container_hook(bundle):
    bundle.config["hooks"] = {"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]}
    r = bundle.run()
    assert r.returncode == 1
    assert "hooks.createContainer[0]" in r.stderr and "status 4" in r.stderr
    assert_nothing_left(bundle)


def test_hook_timeout(bundle):
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]}
    r = bundle.run()
    assert r.returncode == 1
    assert "hooks.prestart[0]" in r.stderr and "timed out" in r.stderr
    assert_nothing_left(bundle)


def test_container_hook_timeout(bundle):
    bundle.config["hooks"] = {"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "10"],
                                                   "timeout": 1}]}
    r = bundle.run()
    assert r.returncode == 1 and "timed out" in r.stderr
    assert_nothing_left(bundle)


def test_failing_poststart_only_warns(bundle):
    bundle.config["hooks"] = {"poststart": [{"path": "/bin/false"}]}
    r = bundle.sh("echo ran").run()
    assert r.returncode == 0 and r.stdout == "ran\n"
    assert "warning" in r.stderr and "hooks.poststart[0]" in r.stderr


def test_bad_hook_fields(bundle):
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/true", "timeout": 0}]}
    r = bundle.run()
    assert r.returncode == 1 and "hooks.prestart[0].timeout" in r.stderr
    bundle.config["hooks"] = {"nosuchstage": [{"path": "/bin/true"}]}
    r = bundle.run()
    assert r.returncode == 1 and "hooks.nosuchstage" in r.stderr
    assert_nothing_left(bundle)


def test_hook_gets_the_state_on_stdin(bundle):
    out = os.path.join(bundle.path, "state.json")
    bundle.config["hooks"] = {"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}"]}]}
    bundle.sh("true")
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    st = json.load(open(out))
    assert st["id"] == bundle.last_id and st["pid"] > 0 and st["bundle"] == bundle.path
    assert st["status"] == "creating" and st["ociVersion"]
    assert stat.S_ISREG(os.stat(out).st_mode)


def test_create_container_hook_runs_in_the_runtimes_cwd(bundle, tmp_path):
    """The child mounts through its cwd (csrc/paths.c mount_on: fchdir to each mount
    point, then "."), and puts its own cwd back before anything that may look at it: a
    createContainer hook, run in the container's mount namespace after every mount,
    starts in the cwd the runtime was started in, as startContainer's process does in
    process.cwd."""
    out = tmp_path / "cwd"
    bundle.config["hooks"] = {"createContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"pwd -P > {out}"]}]}
    bundle.config["mounts"].append({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs"})
    bundle.process["cwd"] = "/mnt/t"
    r = bundle.sh("pwd").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "/mnt/t\n"
    assert out.read_text() == os.path.realpath(REPO) + "\n"
    assert_nothing_left(bundle)
