"""The CNI protocol (spec 1.0, plus STATUS and GC of 1.1): `runner-cni` reads the network
configuration on stdin and CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS,
CNI_PATH from the environment, and prints a result or an error object on stdout (exit
status 1 with an error).

Run with arguments, the same executable is an OCI hook (hook.py, main.py):
    runner-cni hook add|del NETWORK [--config-dir DIR] [--ifname NAME] [-p PORTMAP]…

Our own configuration fields: `stateDir` (where the pool and the attachment records live;
else $RUNNER_CNI_STATE_DIR, else /var/lib/runner-cni); `ipam.dataDir` as host-local's.
"""
from __future__ import annotations

import os
import sys

from .. import jsonio
from .errors import (DECODE_FAILURE, GENERIC, INCOMPATIBLE_VERSION, INVALID_ENV, IO_FAILURE,
                     NOT_AVAILABLE, CNIError, bad_config)

PLUGIN_TYPE = "runner-cni"
SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
LATEST = "1.1.0"
DEFAULT_STATE_DIR = "/var/lib/runner-cni"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")


def _valid_name(s) -> bool:
    """libcni's rule for container ids and network names: [a-zA-Z0-9][a-zA-Z0-9_.-]*"""
    return (isinstance(s, str) and bool(s) and s[0].isascii() and s[0].isalnum()
            and all(c.isascii() and (c.isalnum() or c in "_.-") for c in s))


def parse_conf(data: bytes | str) -> dict:
    try:
        raw = jsonio.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(DECODE_FAILURE, "the network configuration on stdin is not JSON",
                       str(e)) from None
    if not isinstance(raw, dict):
        raise CNIError(DECODE_FAILURE, "the network configuration must be a JSON object")
    return raw


def check_version(raw: dict) -> str:
    v = raw.get("cniVersion")
    if not isinstance(v, str) or not v:
        raise bad_config("cniVersion", "is required")
    if v not in SUPPORTED_VERSIONS:
        raise CNIError(INCOMPATIBLE_VERSION, f"cniVersion: {v!r} is not supported",
                       f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    return v


def state_dir(raw: dict) -> str:
    d = raw.get("stateDir") or os.environ.get("RUNNER_CNI_STATE_DIR") or DEFAULT_STATE_DIR
    if not isinstance(d, str) or not d.startswith("/"):
        raise bad_config("stateDir", "must be an absolute path")
    return d


def load_bridge_conf(raw: dict, command: str = "ADD"):
    from .bridge import Conf

    check_version(raw)
    if "plugins" in raw:
        raise bad_config("plugins", "a configuration list goes to the runtime, not to the "
                         "plugin (which gets one plugin's object)")
    if not _valid_name(raw.get("name")):
        raise bad_config("name", f"{raw.get('name')!r} is not a network name "
                         "([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    if raw.get("type") != PLUGIN_TYPE:
        raise bad_config("type", f"{raw.get('type')!r}: this plugin is {PLUGIN_TYPE!r}")
    return Conf(raw, state_dir(raw), command)


def env_args(command: str, env) -> "object":
    from .bridge import Args, check_ifname

    def need(key: str) -> str:
        v = env.get(key, "")
        if not v:
            raise CNIError(INVALID_ENV, f"required environment variable {key} is missing")
        return v

    cid = need("CNI_CONTAINERID")
    if not _valid_name(cid):
        raise CNIError(INVALID_ENV, f"CNI_CONTAINERID: {cid!r} is not a valid container id "
                       "([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    ifname = need("CNI_IFNAME")
    try:
        check_ifname(ifname, "CNI_IFNAME")
    except CNIError as e:
        raise CNIError(INVALID_ENV, e.msg) from None
    netns = need("CNI_NETNS") if command in ("ADD", "CHECK") else env.get("CNI_NETNS", "")
    return Args(cid, netns, ifname)


def convert(result: dict, version: str) -> dict:
    """Results of 0.3.x and 0.4.0 carry each IP's "version"; 1.x dropped it."""
    out = dict(result, cniVersion=version)
    if version.startswith("0."):
        out["ips"] = [dict(ip, version="6" if ":" in ip["address"] else "4")
                      for ip in result.get("ips", [])]
    return out


def execute(command: str, raw: dict, env) -> dict | None:
    """One CNI call in this process (the plugin, the hook and the Python API all come
    here); → the result to print, or None."""
    if command == "VERSION":
        v = raw.get("cniVersion") if raw.get("cniVersion") in SUPPORTED_VERSIONS else LATEST
        return {"cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS}
    conf = load_bridge_conf(raw, command)
    version = raw["cniVersion"]
    from . import bridge

    if command == "ADD":
        return convert(bridge.add(conf, env_args(command, env)), version)
    if command == "DEL":
        bridge.delete(conf, env_args(command, env))
        return None
    if command == "CHECK":
        if version in ("0.3.0", "0.3.1"):
            raise CNIError(INCOMPATIBLE_VERSION, f"CHECK is not defined for cniVersion {version}")
        prev = raw.get("prevResult")
        if not isinstance(prev, dict):
            raise bad_config("prevResult", "CHECK needs the ADD's result as prevResult")
        bridge.check(conf, env_args(command, env), prev)
        return None
    if command == "STATUS":
        status(conf)
        return None
    if command == "GC":
        gc(conf, raw.get("cni.dev/valid-attachments"))
        return None
    raise CNIError(INVALID_ENV, f"CNI_COMMAND: unknown command {command!r} "
                   f"(want one of {', '.join(COMMANDS)})")


def status(conf) -> None:
    """Can an ADD succeed now? The state directory, nft when needed, a free address."""
    from . import ipam, nft

    if conf.needs_nft and not nft.available():
        raise CNIError(NOT_AVAILABLE, "nft (nftables) is not installed")
    if conf.ipam:
        d = conf.ipam.dir
        probe = d
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.access(probe, os.W_OK):
            raise CNIError(NOT_AVAILABLE, f"the pool directory {d} is not writable")
        if ipam.Pool(conf.ipam).free_count() <= 0:
            raise CNIError(NOT_AVAILABLE, f"no free addresses left in network {conf.name!r}")


def gc(conf, valid) -> None:
    """CNI 1.1 GC: release every attachment of this network not in the valid list."""
    from . import bridge, ipam, records

    if valid is None:
        valid = []
    if not isinstance(valid, list):
        raise bad_config("cni.dev/valid-attachments", "must be a list")
    keep = {(a.get("containerID"), a.get("ifname")) for a in valid if isinstance(a, dict)}
    for cid, ifname, _ in records.list_all(conf.state_dir, conf.name):
        if (cid, ifname) not in keep:
            bridge.delete(conf, bridge.Args(cid, "", ifname))
    if conf.ipam:
        pool = ipam.Pool(conf.ipam)
        for cid, ifname in set(pool.owners()) - keep:
            pool.release(cid, ifname)


def _print(obj: dict) -> None:
    sys.stdout.write(jsonio.dumps(obj, indent=4) + "\n")
    sys.stdout.flush()


def main() -> int:
    """The plugin: one CNI call from the environment and stdin."""
    env = os.environ
    command = env.get("CNI_COMMAND", "")
    version = LATEST
    try:
        if not command:
            raise CNIError(INVALID_ENV, "required environment variable CNI_COMMAND is missing")
        if command not in COMMANDS:
            raise CNIError(INVALID_ENV, f"CNI_COMMAND: unknown command {command!r}")
        try:
            data = sys.stdin.buffer.read()
        except OSError as e:
            raise CNIError(IO_FAILURE, "reading the configuration from stdin", e.strerror) from None
        raw = parse_conf(data)
        if raw.get("cniVersion") in SUPPORTED_VERSIONS:
            version = raw["cniVersion"]
        out = execute(command, raw, env)
        if out is not None:
            _print(out)
        return 0
    except CNIError as e:
        _print(e.json(version))
        return 1
    except OSError as e:
        err = CNIError(IO_FAILURE, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        _print(err.json(version))
        return 1
    except Exception as e:  # a bug of ours: still an answer the runtime can read
        _print(CNIError(GENERIC, f"internal error: {type(e).__name__}: {e}").json(version))
        return 1

