"""Networking for containers: the CNI plugin `runner-cni` (cni.py) and this Python API,
which runs the same code in-process (the calling process's network namespace is the host's).

    from libcontainer import network
    result = network.attach("/proc/1234/ns/net", "web", "mynet")       # ADD
    network.check("/proc/1234/ns/net", "web", "mynet", result)         # CHECK
    network.detach("web", "mynet")                                     # DEL

`network` is the name of a configuration in the network config dir (netconf.py,
`runner network create`), or a plugin configuration dict. Nothing here is imported by a
container start: a bundle gets networking through its hooks (hook.py)."""
from __future__ import annotations

from .errors import CNIError

__all__ = ["attach", "detach", "check", "CNIError"]


def _conf(network, config_dir: str | None, port_mappings=None) -> dict:
    from . import netconf

    conf = dict(network) if isinstance(network, dict) else netconf.load(network, config_dir)
    if port_mappings:
        conf["runtimeConfig"] = dict(conf.get("runtimeConfig") or {},
                                     portMappings=list(port_mappings))
    return conf


def _env(cid: str, netns: str, ifname: str) -> dict:
    return {"CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": ifname}


def attach(netns: str, container_id: str, network, ifname: str = "eth0", *,
           port_mappings: list | None = None, config_dir: str | None = None) -> dict:
    """Connect the network namespace at `netns` (a path: /proc/PID/ns/net or a bind mount)
    to `network` as `ifname`; → the CNI result (interfaces, ips, routes)."""
    from .cni import execute

    return execute("ADD", _conf(network, config_dir, port_mappings),
                   _env(container_id, netns, ifname))


def detach(container_id: str, network, ifname: str = "eth0", netns: str = "", *,
           port_mappings: list | None = None, config_dir: str | None = None) -> None:
    """Release everything the attach made; fine to call twice or after the namespace is gone."""
    from .cni import execute

    execute("DEL", _conf(network, config_dir, port_mappings), _env(container_id, netns, ifname))


def check(netns: str, container_id: str, network, result: dict, ifname: str = "eth0", *,
          port_mappings: list | None = None, config_dir: str | None = None) -> None:
    """Raise CNIError when the attachment drifted from `result`."""
    from .cni import execute

    conf = dict(_conf(network, config_dir, port_mappings), prevResult=result)
    execute("CHECK", conf, _env(container_id, netns, ifname))
