"""linux.netDevices: move existing host network devices into the container's network
namespace (OCI runtime spec 1.3, config-linux.md "Network Devices").

The runner does it from the runtime namespace, over netlink (pyroute2), once the child has
its network namespace and before anything of the container runs. Moving a device drops its
addresses, so the permanent global ones are read first and added again inside; the device
is then set up. It is never moved back: when the namespace goes, the kernel returns
physical devices to the host and destroys virtual ones, as the spec says.

pyroute2 is imported only here, and only when a config names devices: its package import
alone costs ~250 ms on this machine.
"""
from __future__ import annotations

import os
import socket

from .errors import ConfigError, StartError

FIELD = "linux.netDevices"
IFNAMSIZ = 16
IFA_F_PERMANENT = 0x80
# flags an address is added with that say how it behaves (nodad, noprefixroute, ...):
# kept, so that the address inside is the one the host had (not "tentative" again)
IFA_F_SETTABLE = 0x02 | 0x10 | 0x100 | 0x200 | 0x400
RT_SCOPE_UNIVERSE = 0


class NetDevice:
    """One entry: the host's device `host` becomes `name` in the container (`name` may
    be a template ending in %d: the lowest free number is taken)."""

    __slots__ = ("host", "name")

    def __init__(self, host: str, name: str):
        self.host, self.name = host, name

    def __repr__(self) -> str:
        return f"NetDevice({self.host!r} -> {self.name!r})"


def parse(linux: dict) -> list:
    """The config's netDevices as NetDevice objects; an error names the entry."""
    raw = linux.get("netDevices")
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ConfigError(FIELD, "must be an object (host device name → {name})")
    out = []
    for host, opts in raw.items():
        path = f"{FIELD}.{host}"
        _check_name(host, path, template=False)
        if not isinstance(opts, dict):
            raise ConfigError(path, "must be an object")
        name = opts.get("name", "") or host
        if not isinstance(name, str):
            raise ConfigError(f"{path}.name", "must be a string")
        if "name" in opts:
            _check_name(name, f"{path}.name", template=True)
        out.append(NetDevice(host, name))
    names = [d.name for d in out if "%d" not in d.name]
    for d in out:
        if "%d" not in d.name and names.count(d.name) > 1:
            raise ConfigError(f"{FIELD}.{d.host}.name", f"{d.name!r} is given to two devices")
    return out


def _check_name(name: str, path: str, template: bool) -> None:
    """What the kernel accepts as an interface name (dev_valid_name)."""
    bad = (not name or len(name.encode()) >= IFNAMSIZ or name in (".", "..")
           or any(c in name for c in "/:") or any(c.isspace() for c in name))
    if bad:
        raise ConfigError(path, f"{name!r} is not a valid network interface name "
                          f"(1-{IFNAMSIZ - 1} bytes, no '/', ':' or whitespace)")
    if "%" in name and (not template or name.count("%") > 1 or "%d" not in name):
        raise ConfigError(path, f"{name!r}: the only template allowed is one %d")


def check(devices: list, has_netns: bool) -> None:
    """Before the clone: the container needs a network namespace of its own (or joined)
    and every device must exist on the host, so that nothing is moved when one is
    missing."""
    if not devices:
        return
    from .userns import rootless

    if rootless():
        raise ConfigError(FIELD, "moving host network devices needs a runtime running as root "
                          "(CAP_NET_ADMIN in the host's network namespace); rootless, a "
                          "container has its own network namespace with lo only")
    if not has_netns:
        raise ConfigError(FIELD, "needs a network namespace in linux.namespaces "
                          "(the devices would stay on the host otherwise)")
    for d in devices:
        try:
            socket.if_nametoindex(d.host)
        except OSError:
            raise ConfigError(f"{FIELD}.{d.host}", f"no network device {d.host!r} on the host") from None


def move(devices: list, pid: int) -> None:
    """Move every device into the network namespace of `pid`, renamed, with its permanent
    global addresses, and set it up. Names are resolved (and collisions refused) before
    the first device moves."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    target = f"/proc/{pid}/ns/net"
    try:
        with IPRoute() as host, IPRoute(netns=target) as inside:
            taken = {link.get_attr("IFLA_IFNAME") for link in inside.get_links()}
            plan = []
            for d in devices:
                index = _index(host, d)
                final = _final_name(d, taken)
                taken.add(final)
                plan.append((d, index, final, _kept_addresses(host, index)))
            for d, index, final, addrs in plan:
                try:
                    host.link("set", index=index, net_ns_pid=pid, ifname=final)
                except NetlinkError as e:
                    raise StartError(f"{FIELD}.{d.host}: moving it into the container "
                                     f"as {final!r}: {_strerror(e)}", e.code) from None
                try:
                    new_index = inside.link_lookup(ifname=final)[0]
                    for a in addrs:
                        inside.addr("add", index=new_index, **a)
                    inside.link("set", index=new_index, state="up")
                except (NetlinkError, IndexError) as e:
                    raise StartError(f"{FIELD}.{d.host}: setting up {final!r} in the "
                                     f"container: {_strerror(e)}",
                                     getattr(e, "code", 0)) from None
    except NetlinkError as e:  # opening the sockets, listing links or addresses
        raise StartError(f"{FIELD}: {_strerror(e)}", e.code) from None


def _index(host, d: NetDevice) -> int:
    found = host.link_lookup(ifname=d.host)
    if not found:
        raise ConfigError(f"{FIELD}.{d.host}", f"no network device {d.host!r} on the host")
    return found[0]


def _final_name(d: NetDevice, taken: set) -> str:
    """The name inside: a template gets the lowest free number (what the kernel would
    pick, decided here so that the device can be found again after the move)."""
    if "%d" not in d.name:
        if d.name in taken:
            raise ConfigError(f"{FIELD}.{d.host}.name" if d.name != d.host else f"{FIELD}.{d.host}",
                              f"a network device named {d.name!r} already exists in the "
                              "container's network namespace (end the name with %d to let "
                              "a number be chosen)")
        return d.name
    for n in range(1 << 15):
        name = d.name.replace("%d", str(n))
        if len(name.encode()) >= IFNAMSIZ:
            break
        if name not in taken:
            return name
    raise ConfigError(f"{FIELD}.{d.host}.name", f"no free name for the template {d.name!r}")


def _kept_addresses(host, index: int) -> list:
    """The spec keeps the permanent addresses of global scope, of every family."""
    out = []
    for msg in host.get_addr(index=index):
        flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
        if not flags & IFA_F_PERMANENT or msg["scope"] != RT_SCOPE_UNIVERSE:
            continue
        addr = {"address": msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"),
                "prefixlen": msg["prefixlen"], "family": msg["family"]}
        peer = msg.get_attr("IFA_ADDRESS")
        if msg.get_attr("IFA_LOCAL") and peer and peer != addr["address"]:
            addr["local"], addr["address"] = addr["address"], peer  # point-to-point
        if msg.get_attr("IFA_BROADCAST"):
            addr["broadcast"] = msg.get_attr("IFA_BROADCAST")
        if flags & IFA_F_SETTABLE:
            addr["flags"] = flags & IFA_F_SETTABLE
        out.append(addr)
    return out


def _strerror(e: BaseException) -> str:
    code = getattr(e, "code", 0)
    return os.strerror(code) if code else str(e)
