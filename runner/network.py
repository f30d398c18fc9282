"""`runner network create|ls|rm|inspect|hooks`: the named network configurations a bundle's
hooks (runner-cni hook add/del) and the Python API (libcontainer.network) attach containers
to. Only this verb imports libcontainer.network."""
from __future__ import annotations

import os
import sys

from libcontainer import jsonio
from libcontainer.errors import InvalidArgument

from .args import Flag, flag_help, parse

DIR_FLAG = Flag("--config-dir", "config_dir", True, "",
                "network configurations (default $RUNNER_NETWORK_DIR or /etc/runner/networks)")
HELP = Flag("--help,-h", "help")

CREATE_FLAGS = [
    Flag("--subnet", "subnet", True, "", "IPv4 subnet (default: a free 10.89.x.0/24)"),
    Flag("--subnet6", "subnet6", True, "", "IPv6 subnet (dual stack with --subnet)"),
    Flag("--gateway", "gateway", True, "", "gateway address (default: the subnet's first)"),
    Flag("--bridge", "bridge", True, "", "bridge name (default: rn-NAME)"),
    Flag("--mtu", "mtu", True, "0", "MTU of the bridge and the veths"),
    Flag("--no-masquerade", "no_masq", help="no ipMasq: containers' traffic leaves unNATed"),
    Flag("--state-dir", "state_dir", True, "", "the plugin's stateDir (pool, records)"),
    DIR_FLAG, HELP]
LS_FLAGS = [Flag("--quiet,-q", "quiet", help="names only"),
            Flag("--format,-f", "format", True, "table", "table or json"), DIR_FLAG, HELP]
RM_FLAGS = [Flag("--force,-f", "force", help="remove even with containers attached"),
            DIR_FLAG, HELP]
INSPECT_FLAGS = [DIR_FLAG, HELP]
HOOKS_FLAGS = [Flag("--publish,-p", "ports", True, None,
                    "[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO], repeatable", multiple=True),
               Flag("--ifname", "ifname", True, "eth0", "the interface in the container"),
               DIR_FLAG, HELP]

USAGE = """usage: runner network SUBCOMMAND [flags]

   create NAME     write a network configuration (a bridge, a pool, NAT)
   ls              list the networks
   rm NAME…        remove networks
   inspect NAME…   print configurations and attached containers (JSON)
   hooks NAME      print config.json hooks that attach a container to NAME
"""


def cmd_network(ctx, argv: list) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 1
    sub, rest = argv[0], argv[1:]
    fn = {"create": _create, "ls": _ls, "list": _ls, "rm": _rm, "remove": _rm,
          "inspect": _inspect, "hooks": _hooks}.get(sub)
    if fn is None:
        raise InvalidArgument(f"network: unknown subcommand {sub!r} (create, ls, rm, inspect, hooks)")
    return fn(rest)


def _one_name(pos: list, sub: str) -> str:
    if len(pos) != 1:
        raise InvalidArgument(f"network {sub}: expects one network name, got {len(pos)}")
    return pos[0]


def _create(argv: list) -> int:
    from libcontainer.network import netconf

    opts, pos = parse(argv, CREATE_FLAGS)
    if opts["help"]:
        return flag_help("network create NAME", CREATE_FLAGS)
    name = _one_name(pos, "create")
    try:
        mtu = int(opts["mtu"])
    except ValueError:
        raise InvalidArgument(f"--mtu: {opts['mtu']!r} is not a number") from None
    netconf.create(name, subnet=opts["subnet"], subnet6=opts["subnet6"],
                   gateway=opts["gateway"], bridge=opts["bridge"], mtu=mtu,
                   ip_masq=not opts["no_masq"], state_dir=opts["state_dir"],
                   d=opts["config_dir"] or None)
    sys.stdout.write(name + "\n")
    return 0


def _ls(argv: list) -> int:
    from libcontainer.network import netconf

    opts, pos = parse(argv, LS_FLAGS)
    if opts["help"]:
        return flag_help("network ls", LS_FLAGS)
    if pos:
        raise InvalidArgument(f"network ls: unexpected argument {pos[0]!r}")
    if opts["format"] not in ("table", "json"):
        raise InvalidArgument(f"--format: {opts['format']!r} (want table or json)")
    d = opts["config_dir"] or None
    confs = netconf.list_all(d)
    if opts["quiet"]:
        sys.stdout.write("".join(c["name"] + "\n" for c in confs))
        return 0
    rows = []
    for c in confs:
        plugin = netconf.load(c["name"], d)
        rows.append({"name": c["name"], "bridge": plugin.get("bridge", ""),
                     "subnets": netconf._subnets(c),
                     "containers": len(netconf.attachments(c["name"], d))})
    if opts["format"] == "json":
        sys.stdout.write(jsonio.dumps(rows, indent=2) + "\n")
        return 0
    table = [("NAME", "BRIDGE", "SUBNETS", "CONTAINERS")]
    table += [(r["name"], r["bridge"], ",".join(r["subnets"]), str(r["containers"])) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(4)]
    for t in table:
        sys.stdout.write("   ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip() + "\n")
    return 0


def _rm(argv: list) -> int:
    from libcontainer.network import netconf

    opts, pos = parse(argv, RM_FLAGS)
    if opts["help"]:
        return flag_help("network rm NAME…", RM_FLAGS)
    if not pos:
        raise InvalidArgument("network rm: expects at least one network name")
    for name in pos:
        netconf.remove(name, opts["config_dir"] or None, opts["force"])
        sys.stdout.write(name + "\n")
    return 0


def _inspect(argv: list) -> int:
    from libcontainer.network import netconf

    opts, pos = parse(argv, INSPECT_FLAGS)
    if opts["help"]:
        return flag_help("network inspect NAME…", INSPECT_FLAGS)
    if not pos:
        raise InvalidArgument("network inspect: expects at least one network name")
    d = opts["config_dir"] or None
    out = []
    for name in pos:
        conf = netconf.load_list(name, d)
        atts = [{"containerID": a["containerID"], "ifname": a["ifname"], "ips": a.get("ips", []),
                 "hostInterface": a.get("hostInterface", ""),
                 "portMappings": a.get("portMappings", [])}
                for a in netconf.attachments(name, d)]
        out.append(dict(conf, file=netconf.path(name, d), containers=atts))
    sys.stdout.write(jsonio.dumps(out, indent=2) + "\n")
    return 0


def plugin_path() -> str:
    """runner-cni next to this runner (the same install), else on PATH."""
    for d in (os.path.dirname(os.path.abspath(sys.argv[0])), os.path.dirname(sys.executable)):
        p = os.path.join(d, "runner-cni")
        if os.access(p, os.X_OK):
            return p
    for d in os.environ.get("PATH", "").split(":"):
        p = os.path.join(d, "runner-cni")
        if d and os.access(p, os.X_OK):
            return p
    raise InvalidArgument("runner-cni is not installed next to runner or on PATH")


def _hooks(argv: list) -> int:
    from libcontainer.network import hook, netconf

    opts, pos = parse(argv, HOOKS_FLAGS)
    if opts["help"]:
        return flag_help("network hooks NAME", HOOKS_FLAGS)
    name = _one_name(pos, "hooks")
    d = opts["config_dir"] or None
    netconf.load(name, d)  # it exists
    for p in opts["ports"]:
        try:
            hook.parse_port(p)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    # the hook gets no environment: a directory other than the default goes in its args
    cd = netconf.config_dir(d)
    entries = hook.entries(name, plugin_path(), None if cd == netconf.DEFAULT_DIR else cd,
                           opts["ports"], opts["ifname"])
    sys.stdout.write(jsonio.dumps(entries, indent=2) + "\n")
    return 0
