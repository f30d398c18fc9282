"""Named network configurations: `<config dir>/<name>.conflist`, CNI configuration lists of
one runner-cni plugin, the format containerd, podman and libcni read (copy one into
/etc/cni/net.d and they use it). The directory is --config-dir, else $RUNNER_NETWORK_DIR,
else /etc/runner/networks."""
from __future__ import annotations

import os

from .. import jsonio
from ..errors import AlreadyExists, InvalidArgument, NotFound
from .addr import parse_cidr
from .cni import PLUGIN_TYPE, _valid_name

DEFAULT_DIR = "/etc/runner/networks"
CNI_VERSION = "1.0.0"
AUTO_POOL = "10.89.{}.0/24"  # podman's default is 10.88.0.0/16: stay clear of it


def config_dir(d: str | None = None) -> str:
    return d or os.environ.get("RUNNER_NETWORK_DIR") or DEFAULT_DIR


def path(name: str, d: str | None = None) -> str:
    return os.path.join(config_dir(d), name + ".conflist")


def bridge_name(name: str) -> str:
    if len("rn-" + name) <= 15:
        return "rn-" + name
    from _sha256 import sha256

    return "rn-" + sha256(name.encode()).hexdigest()[:12]


def load_list(name: str, d: str | None = None) -> dict:
    if not _valid_name(name):
        raise InvalidArgument(f"{name!r} is not a network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    p = path(name, d)
    try:
        with open(p) as f:
            raw = jsonio.loads(f.read())
    except FileNotFoundError:
        raise NotFound(f"no network {name!r} (no {p})") from None
    except ValueError as e:
        raise InvalidArgument(f"{p}: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("plugins"), list):
        raise InvalidArgument(f"{p}: not a CNI configuration list")
    return raw


def load(name: str, d: str | None = None) -> dict:
    """The runner-cni plugin's configuration of network `name`, as a runtime would send it
    (name and cniVersion of the list)."""
    raw = load_list(name, d)
    for plugin in raw["plugins"]:
        if isinstance(plugin, dict) and plugin.get("type") == PLUGIN_TYPE:
            return dict(plugin, name=raw.get("name", name),
                        cniVersion=raw.get("cniVersion", CNI_VERSION))
    raise InvalidArgument(f"{path(name, d)}: no {PLUGIN_TYPE} plugin in it")


def list_all(d: str | None = None) -> list:
    try:
        names = sorted(os.listdir(config_dir(d)))
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        if n.endswith(".conflist"):
            try:
                out.append(load_list(n[:-len(".conflist")], d))
            except (InvalidArgument, NotFound):
                continue
        # a file that is not ours, or broken: `ls` lists what it can read
    return out


def _subnets(conf: dict) -> list:
    ipam = next((p.get("ipam") or {} for p in conf.get("plugins", []) if isinstance(p, dict)), {})
    out = [r.get("subnet") for rs in ipam.get("ranges") or [] for r in rs if isinstance(r, dict)]
    return [s for s in out if s] + ([ipam["subnet"]] if ipam.get("subnet") else [])


def create(name: str, *, subnet: str = "", subnet6: str = "", gateway: str = "",
           bridge: str = "", mtu: int = 0, ip_masq: bool = True, state_dir: str = "",
           d: str | None = None) -> dict:
    """Write the configuration of a new network; → it. Every value is checked the way the
    plugin will check it."""
    from .bridge import Conf
    from .cni import check_version

    if not _valid_name(name):
        raise InvalidArgument(f"{name!r} is not a network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    p = path(name, d)
    if os.path.exists(p):
        raise AlreadyExists(f"network {name!r} exists ({p})")
    used = [parse_cidr(s) for c in list_all(d) for s in _subnets(c) if _parses(s)]
    if not subnet and not subnet6:
        subnet = next((s for s in (AUTO_POOL.format(i) for i in range(256))
                       if not any(parse_cidr(s).overlaps(u) for u in used)), "")
        if not subnet:
            raise InvalidArgument("--subnet: every automatic 10.89.x.0/24 is taken; give one")
    ranges = []
    for flag, text in (("--subnet", subnet), ("--subnet6", subnet6)):
        if not text:
            continue
        try:
            net = parse_cidr(text, strict=True)
        except ValueError as e:
            raise InvalidArgument(f"{flag}: {e}") from None
        if (flag == "--subnet6") != net.v6:
            raise InvalidArgument(f"{flag}: {text} is not an IPv{'6' if flag == '--subnet6' else '4'} subnet")
        clash = next((u for u in used if u.overlaps(net)), None)
        if clash:
            raise InvalidArgument(f"{flag}: {text} overlaps {clash.cidr} of another network")
        r = {"subnet": net.cidr}
        if gateway and (":" in gateway) == net.v6:
            r["gateway"] = gateway
        ranges.append([r])
    plugin = {"type": PLUGIN_TYPE, "bridge": bridge or bridge_name(name), "isGateway": True,
              "ipMasq": ip_masq, "hairpinMode": True,
              "ipam": {"type": "host-local", "ranges": ranges,
                       "routes": [{"dst": "::/0" if rs[0]["subnet"].count(":") else "0.0.0.0/0"}
                                  for rs in ranges]},
              "capabilities": {"portMappings": True}}
    if mtu:
        plugin["mtu"] = mtu
    if state_dir:
        plugin["stateDir"] = state_dir
    conf = {"cniVersion": CNI_VERSION, "name": name, "plugins": [plugin]}
    try:
        raw = dict(plugin, name=name, cniVersion=CNI_VERSION)
        check_version(raw)
        Conf(raw, state_dir or "/")
    except Exception as e:  # CNIError: say it as the CLI says errors
        raise InvalidArgument(str(e)) from None
    os.makedirs(config_dir(d), 0o755, exist_ok=True)
    tmp = f"{p}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(jsonio.dumps(conf, indent=2) + "\n")
    os.rename(tmp, p)
    return conf


def _parses(s: str) -> bool:
    try:
        parse_cidr(s)
        return True
    except ValueError:
        return False


def attachments(name: str, d: str | None = None) -> list:
    """The containers attached to network `name` (from the plugin's records)."""
    from . import records
    from .cni import state_dir

    conf = load(name, d)
    return [dict(rec, containerID=cid, ifname=ifname)
            for cid, ifname, rec in records.list_all(state_dir(conf), name)]


def remove(name: str, d: str | None = None, force: bool = False) -> None:
    """Remove the configuration; refused while containers are attached (unless force).
    What the network left is removed too when nothing uses it any more: its pool
    directory, and its bridge in this network namespace when no port is on it."""
    atts = attachments(name, d)
    if atts and not force:
        ids = ", ".join(a["containerID"] for a in atts)
        raise InvalidArgument(f"network {name!r} is in use by {ids} (--force removes it anyway)")
    plugin = load(name, d)
    os.unlink(path(name, d))
    if atts:
        return
    from . import ipam
    from .bridge import Conf
    from .cni import state_dir

    try:
        conf = Conf(plugin, state_dir(plugin))
    except Exception:  # a configuration edited by hand into something broken: it is gone
        return
    if conf.ipam:
        ipam.Pool(conf.ipam).remove_if_empty()
    _remove_idle_bridge(conf.bridge)
    from . import nft
    from .bridge import nft_lock

    if conf.needs_nft and nft.available():
        nft.remove_if_unused(nft_lock(conf))  # the shared table, once no attachment is in it


def _remove_idle_bridge(name: str) -> None:
    from .rtnl import RTNL, NetlinkError

    try:
        with RTNL() as nl:
            br = nl.link(name=name)
            if br is None or br.kind != "bridge":
                return
            if any(link.master == br.index for link in nl.links()):
                return  # something else is on it: not ours to take away
            nl.del_link(br.index)
    except NetlinkError:
        pass
