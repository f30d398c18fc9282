"""What a hook is given (issue 11, point 5), side by side with runc and crun:

- the state on stdin: prestart, a hook that runtime-spec 1.0 ran at `start`, sees the
  container "created" (as crun gives it, and as the OCI validation suite's hooks_stdin
  checks); createRuntime "creating" (runtime.md: during create); poststart "running" with
  the process's pid even when the process has already exited, as crun;
- the environment: a hook without `env` gets the runtime's own environment (Go's exec.Cmd
  with a nil Env, in runc and crun alike) in the runtime's namespace, and the process's
  environment in the container's (runc's init has set it by then); `"env": []` is empty."""
from __future__ import annotations

import json
import os


def hook(out: str, stage: str, **extra) -> dict:
    return dict({"path": "/bin/sh",
                 "args": ["sh", "-c", f"cat > {out}/{stage}.state; env > {out}/{stage}.env"]},
                **extra)


def read(out: str, stage: str):
    with open(os.path.join(out, f"{stage}.state")) as f:
        state = json.load(f)
    with open(os.path.join(out, f"{stage}.env")) as f:
        env = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    return state, env


def test_hook_state_and_environment(bundle, tmp_path):
    out = str(tmp_path / "hooks")
    os.mkdir(out)
    bundle.config["root"]["readonly"] = False
    bundle.process["env"].append("IN_PROCESS=1")
    bundle.set_args("true")  # gone before poststart runs, most of the time
    bundle.config["hooks"] = {
        "prestart": [hook(out, "prestart")],
        "createRuntime": [hook(out, "createRuntime"), hook(out, "emptyenv", env=[])],
        "poststart": [hook(out, "poststart")],
        "poststop": [hook(out, "poststop", env=["ONLY=this"])],
        # in the container: its /tmp
        "startContainer": [hook("/tmp", "startContainer")],
    }
    env = dict(os.environ, FROM_RUNTIME="yes")
    r = bundle.run(env=env)
    assert r.returncode == 0, r.stderr

    pre, pre_env = read(out, "prestart")
    assert pre["status"] == "created" and pre["pid"] > 0
    assert pre["id"] == bundle.last_id and pre["bundle"] == bundle.path
    cr, cr_env = read(out, "createRuntime")
    assert cr["status"] == "creating" and cr["pid"] == pre["pid"]
    post, post_env = read(out, "poststart")
    assert post["status"] == "running" and post["pid"] == pre["pid"]
    stop, stop_env = read(out, "poststop")
    assert stop["status"] == "stopped"

    # no env: the runtime's; [] : nothing (sh adds PWD and the like itself)
    for e in (pre_env, cr_env, post_env):
        assert e.get("FROM_RUNTIME") == "yes" and e.get("PATH") == os.environ["PATH"]
    _, empty = read(out, "emptyenv")
    assert "FROM_RUNTIME" not in empty and "PATH" not in empty
    assert stop_env.get("ONLY") == "this" and "FROM_RUNTIME" not in stop_env
    # in the container: the process's environment
    _, sc_env = read(os.path.join(bundle.rootfs, "tmp"), "startContainer")
    assert sc_env.get("IN_PROCESS") == "1" and "FROM_RUNTIME" not in sc_env
    assert sc_env.get("PATH") == next(e[5:] for e in bundle.process["env"]
                                      if e.startswith("PATH="))
