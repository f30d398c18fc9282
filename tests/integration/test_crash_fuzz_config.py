"""Fuzzed config.json (hypothesis): wrong types, huge and negative numbers, missing keys, odd
strings, deep nesting. Whatever the config, `create` either makes the container or raises a
one-line ContainerError (a ConfigError names the field) — never another exception, never a
hang — and a refused config leaves nothing behind."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import uuid

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from conftest import ROOTFS, blkio_weight_supported, cgroup_dirs, need_root  # noqa: E402
from libcontainer.default_spec import default_config  # noqa: E402

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def base_config() -> dict:
    """The default config with more for the fuzzer to break: limits, devices, rlimits,
    hooks, seccomp, sysctl."""
    c = default_config(terminal=False)
    c["process"]["args"] = ["true"]
    c["process"]["oomScoreAdj"] = 10
    c["process"]["rlimits"].append({"type": "RLIMIT_NPROC", "hard": 100, "soft": 50})
    c["hooks"] = {"createRuntime": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]}
    lx = c["linux"]
    lx["resources"] = {"memory": {"limit": 64 << 20, "swappiness": 10},
                       "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
                       "pids": {"limit": 50},
                       "devices": [{"allow": False, "access": "rwm"},
                                   {"allow": True, "type": "c", "major": 1, "minor": 3,
                                    "access": "rwm"}]}
    if blkio_weight_supported():
        # only where the host can apply it: elsewhere every config with it is refused
        # (rightly), and the fuzz would never reach a container that is made
        lx["resources"]["blockIO"] = {"weight": 100}
    lx["devices"] = [{"path": "/dev/fuzz", "type": "c", "major": 1, "minor": 3,
                      "fileMode": 0o666, "uid": 0, "gid": 0}]
    lx["sysctl"] = {"net.ipv4.ip_forward": "1"}
    lx["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                     "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO",
                                   "errnoRet": 1}]}
    return c


def paths(obj, prefix=()) -> list:
    """Every key path in a JSON value (dict keys and list indexes)."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out += paths(v, prefix + (k,))
    return out


BASE = base_config()
PATHS = [p for p in paths(BASE) if p[0] not in ("root", "ociVersion")] + [("root", "path")]

NUMBERS = st.sampled_from([-1, 0, 1, -2**31, 2**31, 2**32, 2**63, 2**64, -2**63 - 1,
                           10**30, -10**30, 1.5, -0.0, 1e308, 2**53 + 1]) | st.integers()
STRINGS = st.sampled_from(["", "\0", "a\0b", "../../etc", "/", "/..", "x" * 5000, "\u2603",
                           "\n", " ", "-1", "0x10", "null", "%s%n", "\udcff"[:0] + "\u00e9",
                           "CAP_SYS_ADMIN", "RLIMIT_NOFILE", "SCMP_ACT_KILL"]) | st.text(max_size=12)
LEAVES = st.none() | st.booleans() | NUMBERS | STRINGS
VALUES = st.recursive(LEAVES, lambda ch: st.lists(ch, max_size=3)
                      | st.dictionaries(STRINGS, ch, max_size=3), max_leaves=6)
MUTATION = st.tuples(st.sampled_from(PATHS), st.sampled_from(["delete", "replace", "replace"]),
                     VALUES)


def mutate(config: dict, path: tuple, how: str, value) -> dict:
    parent = config
    for k in path[:-1]:
        try:
            parent = parent[k]
        except (KeyError, IndexError, TypeError):
            return config  # an earlier mutation removed the way there
    key = path[-1]
    try:
        if how == "delete":
            del parent[key]
        else:
            parent[key] = value
    except (KeyError, IndexError, TypeError):
        pass
    return config


class Harness:
    """A bundle and a state root shared by every example (a function-scoped fixture would
    not be reset between hypothesis examples anyway)."""

    def __init__(self, tmp: str):
        self.bundle = os.path.join(tmp, "bundle")
        self.root = os.path.join(tmp, "state")
        os.makedirs(self.bundle)
        os.chmod(tmp, 0o755)
        subprocess.run(["cp", "-a", ROOTFS, os.path.join(self.bundle, "rootfs")], check=True)
        self.devnull = open(os.devnull, "w+")
        self.made = self.refused = 0

    def attempt(self, text: str) -> None:
        import libcontainer
        from libcontainer.errors import ConfigError, ContainerError

        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            f.write(text)
        cid = "fz-" + uuid.uuid4().hex[:10]
        signal.alarm(30)  # a hang fails the test instead of stalling the suite
        try:
            c = libcontainer.create(self.bundle, cid, root=self.root,
                                    stdio=(self.devnull, self.devnull, self.devnull))
        except ContainerError as e:
            msg = str(e)
            assert msg and "\n" not in msg, f"not a one-line error: {msg!r}"
            assert "Traceback" not in msg and "internal error" not in msg, msg
            if isinstance(e, ConfigError) and "config.json" not in msg:
                assert e.field, f"a config error that names no field: {msg!r}"
            self.refused += 1
            assert not os.path.exists(os.path.join(self.root, cid)), f"{cid}: state dir left"
            left = cgroup_dirs(cid)
            assert not left, f"{cid}: cgroups left: {left}"
        else:
            self.made += 1
            c.delete(force=True)
        finally:
            signal.alarm(0)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    need_root()
    if not os.path.exists(os.path.join(ROOTFS, "bin", "busybox")):
        pytest.skip("no busybox rootfs: run `make rootfs`")

    def on_alarm(sig, frame):
        raise TimeoutError("create did not return within 30 s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    h = Harness(str(tmp_path_factory.mktemp("fuzz")))
    yield h
    signal.signal(signal.SIGALRM, old)
    h.devnull.close()


@settings(max_examples=120, **SETTINGS)
@given(st.lists(MUTATION, min_size=1, max_size=3))
def test_fuzzed_config_is_made_or_refused_clearly(harness, mutations):
    config = copy.deepcopy(BASE)
    for path, how, value in mutations:
        config = mutate(config, path, how, value)
    harness.attempt(json.dumps(config))


DEEP = st.sampled_from([50, 999, 1000, 5000, 100_000])


@settings(max_examples=25, **SETTINGS)
@given(st.sampled_from(PATHS), DEEP, st.sampled_from(["[", "{\"a\":"]))
def test_deeply_nested_value_is_refused_clearly(harness, path, depth, opener):
    closer = "]" if opener == "[" else "}"
    sentinel = "@@DEEP@@"
    config = mutate(copy.deepcopy(BASE), path, "replace", sentinel)
    nested = opener * depth + "1" + closer * depth
    harness.attempt(json.dumps(config).replace(json.dumps(sentinel), nested))


def test_the_fuzz_reaches_both_outcomes(harness):
    """Guards the fuzz itself: a strategy that only ever breaks the config (or never does)
    would not test what it claims."""
    harness.attempt(json.dumps(BASE))
    print("fuzz:", harness.made, "made,", harness.refused, "refused")
    assert harness.made >= 1 and harness.refused >= 10, (harness.made, harness.refused)
