"""`runner-cni hook add|del NETWORK …`: the plugin as an OCI hook, so that a bundle gets
networking from its own config.json (any runtime that runs hooks: runner, runc, crun):

    "hooks": {
      "createRuntime": [{"path": "/…/runner-cni", "args": ["runner-cni", "hook", "add", "mynet"]}],
      "poststop":      [{"path": "/…/runner-cni", "args": ["runner-cni", "hook", "del", "mynet"]}]
    }

The hook reads the container's state (id, pid) on stdin: `add` attaches /proc/PID/ns/net
to the network (a CNI ADD with the id as CNI_CONTAINERID), `del` releases everything (a DEL,
which needs no namespace: at poststop the container's is gone, and its veth with it).
Options: --config-dir DIR (the named networks), --ifname NAME (eth0),
-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO] (repeatable), --state-dir DIR.
`runner network hooks NETWORK` prints these entries for a config.json."""
from __future__ import annotations

import os
import sys

from .. import jsonio
from .errors import CNIError

USAGE = ("usage: runner-cni hook add|del NETWORK [--config-dir DIR] [--ifname NAME] "
         "[--state-dir DIR] [-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]]…\n")


def parse_port(text: str) -> dict:
    """docker's -p: [hostIP:]hostPort:containerPort[/proto] (hostIP may be [v6])."""
    spec, _, proto = text.partition("/")
    host_ip = ""
    if spec.startswith("["):
        host_ip, _, spec = spec[1:].partition("]")
        spec = spec.lstrip(":")
    parts = spec.split(":")
    if len(parts) == 3 and not host_ip:
        host_ip, parts = parts[0], parts[1:]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"-p {text}: want [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]")
    out = {"hostPort": int(parts[0]), "containerPort": int(parts[1]),
           "protocol": proto or "tcp"}
    if host_ip:
        out["hostIP"] = host_ip
    return out


def parse_args(argv: list) -> dict:
    if len(argv) < 3 or argv[0] != "hook" or argv[1] not in ("add", "del"):
        raise ValueError("expected: hook add|del NETWORK")
    opts = {"action": argv[1], "network": argv[2], "config_dir": None, "ifname": "eth0",
            "state_dir": "", "ports": []}
    rest = argv[3:]
    i = 0
    while i < len(rest):
        a = rest[i]
        name, eq, value = a.partition("=")
        if name not in ("--config-dir", "--ifname", "--state-dir", "-p", "--publish"):
            raise ValueError(f"unknown option {a}")
        if not eq:
            i += 1
            if i >= len(rest):
                raise ValueError(f"{name} needs a value")
            value = rest[i]
        if name in ("-p", "--publish"):
            opts["ports"].append(parse_port(value))
        else:
            opts[name[2:].replace("-", "_")] = value
        i += 1
    return opts


def main(argv: list) -> int:
    try:
        opts = parse_args(argv)
    except ValueError as e:
        sys.stderr.write(f"runner-cni: {e}\n{USAGE}")
        return 1
    try:
        state = jsonio.loads(sys.stdin.buffer.read() or b"{}")
        cid = state.get("id") if isinstance(state, dict) else None
        if not cid:
            raise CNIError(4, "the OCI state on stdin has no container id")
        run(opts, cid, state.get("pid") or 0)
        return 0
    except Exception as e:  # the runtime shows our stderr with the hook's failure
        sys.stderr.write(f"runner-cni hook {opts['action']} {opts['network']}: {e}\n")
        return 1


def run(opts: dict, cid: str, pid: int) -> None:
    from . import netconf
    from .cni import execute

    conf = netconf.load(opts["network"], opts["config_dir"])
    if opts["state_dir"]:
        conf["stateDir"] = opts["state_dir"]
    if opts["ports"]:
        conf["runtimeConfig"] = {"portMappings": opts["ports"]}
    env = {"CNI_CONTAINERID": cid, "CNI_IFNAME": opts["ifname"], "CNI_NETNS": ""}
    if opts["action"] == "add":
        if not pid:
            raise CNIError(4, "the OCI state on stdin has no pid (createRuntime or prestart "
                           "is where `hook add` belongs)")
        env["CNI_NETNS"] = f"/proc/{pid}/ns/net"
        execute("ADD", conf, env)
    else:
        execute("DEL", conf, env)


def entries(network: str, exe: str, config_dir: str | None = None, ports: list = (),
            ifname: str = "eth0") -> dict:
    """The config.json `hooks` entries that attach a container to `network` and detach it."""
    extra = []
    if config_dir:
        extra += ["--config-dir", os.path.abspath(config_dir)]
    if ifname != "eth0":
        extra += ["--ifname", ifname]
    for p in ports:
        extra += ["-p", p]
    return {"createRuntime": [{"path": exe, "args": ["runner-cni", "hook", "add", network, *extra]}],
            "poststop": [{"path": exe, "args": ["runner-cni", "hook", "del", network, *extra]}]}
