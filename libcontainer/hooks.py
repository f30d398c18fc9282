"""OCI hooks (config.md "POSIX-platform Hooks").

Runtime-namespace hooks (prestart, createRuntime, poststart, poststop) run here, in the
runtime's process. Container-namespace hooks (createContainer, startContainer) become plan
ops that the child runs itself, so they really execute inside the container's namespaces.
Every hook gets the state JSON on stdin; `timeout` seconds at most, DEFAULT_TIMEOUT without
one: a hook that never exits must not hold the container (and its lock) forever."""
from __future__ import annotations

import os

from . import ops as P
from .errors import ConfigError, StartError

DEFAULT_TIMEOUT = 60  # seconds; runc and crun have none (a hung hook hangs them)
STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


class Hook:
    __slots__ = ("path", "args", "env", "timeout", "field")

    def __init__(self, path: str, args: tuple, env: tuple, timeout: int | None, field: str):
        self.path, self.args, self.env, self.timeout, self.field = path, args, env, timeout, field


def parse(raw: dict) -> dict:
    """stage → [Hook], with every field checked."""
    out = {}
    for stage, items in raw.items():
        if stage not in STAGES:
            raise ConfigError(f"hooks.{stage}", f"unknown hook stage (want one of {', '.join(STAGES)})")
        hooks = []
        for i, h in enumerate(items):
            field = f"hooks.{stage}[{i}]"
            path = h["path"]
            if not path.startswith("/"):
                raise ConfigError(f"{field}.path", f"{path!r} must be an absolute path")
            # no env (not an empty one): the runtime's environment in the runtime's
            # namespace, the process's in the container's, as runc gives them
            args, env = h.get("args") or [], h.get("env")
            for key, val in (("args", args), ("env", env)):
                if val is None:
                    continue
                if not isinstance(val, list) or not all(isinstance(a, str) for a in val):
                    raise ConfigError(f"{field}.{key}", "must be an array of strings")
            timeout = h.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)
                                        or timeout <= 0):
                raise ConfigError(f"{field}.timeout", "must be an integer greater than zero")
            hooks.append(Hook(path, tuple(args), None if env is None else tuple(env),
                              timeout, field))
        out[stage] = hooks
    return out


def add_ops(plan, hooks: list, stage: str, index: int | None = None) -> int:
    """Plan container-namespace hooks; at `index` (before an op) or at the end."""
    for h in hooks:
        env = plan.env if h.env is None else h.env  # the process's, as in runc's init
        data = b"".join(s.encode() + b"\0" for s in h.args + tuple(env))
        o = P.op(P.HOOK, path=h.path, data=data, a=len(h.args), b=len(env),
                 c=h.timeout or DEFAULT_TIMEOUT)
        label = f"{h.field}: running {h.path}"
        if index is None:
            plan.ops.append(o)
            plan.labels.append(label)
        else:
            plan.ops.insert(index, o)
            plan.labels.insert(index, label)
            index += 1
    return index if index is not None else len(plan.ops)


def describe_failure(err: int) -> str:
    """The shim reports a failed hook as a pseudo-errno (see run_hook in shim.c)."""
    if err == 99999:
        return "timed out"
    if err >= 200000:
        return f"killed by signal {err - 200000}"
    if err >= 100000:
        return f"exited with status {err - 100000}"
    return os.strerror(err)


def run(hooks: list, state_json: str, *, strict: bool = True, warn=None) -> None:
    """Run runtime-namespace hooks in order. With strict, the first failure raises
    (prestart, createRuntime); otherwise failures are warnings (poststart, poststop)."""
    if not hooks:
        return
    import subprocess

    for h in hooks:
        argv = list(h.args) or [h.path]
        timeout = h.timeout or DEFAULT_TIMEOUT
        try:
            # a session of its own: on a timeout the hook goes with whatever it started
            p = subprocess.Popen(argv, executable=h.path, stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 env=None if h.env is None else _env_dict(h.env),
                                 start_new_session=True)
        except OSError as e:
            problem, detail = e.strerror, ""
        else:
            try:
                _, err = p.communicate(state_json.encode(), timeout=timeout)
                problem = None if p.returncode == 0 else (
                    f"exited with status {p.returncode}" if p.returncode > 0
                    else f"killed by signal {-p.returncode}")
                detail = err.decode(errors="replace").strip()
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, 9)
                except ProcessLookupError:
                    pass
                p.stderr.close()
                p.wait()
                problem, detail = f"timed out after {timeout}s", ""
        if problem:
            msg = f"{h.field}: {h.path} {problem}" + (f": {detail}" if detail else "")
            if strict:
                raise StartError(msg, 0, h.field)
            if warn:
                warn(msg)


def _env_dict(env: tuple) -> dict:
    """KEY=VALUE strings → dict; an entry without "=" is a name with an empty value."""
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)


def for_stage(raw: dict, stage: str) -> list:
    """One stage's hooks of a config's raw `hooks` (callers import this module only when
    a config has hooks)."""
    return parse(raw).get(stage, []) if raw else []


def run_quietly(hooks: list, state, warn) -> None:
    """Run hooks whose failure is only a warning (poststart, poststop); `state` is called
    for the state JSON only if there is a hook to give it to."""
    if hooks:
        from . import jsonio

        run(hooks, jsonio.dumps(state()), strict=False, warn=warn)
