"""ADD, DEL and CHECK of the reference `bridge` plugin's job: a Linux bridge in the host's
network namespace (the one the plugin runs in), a veth pair per container (the host end
on the bridge, the other end in the container as CNI_IFNAME), the addresses from the pool
(ipam.py) with their routes, the gateway address on the bridge, forwarding, and the NAT
rules of ipMasq and port mappings (nft.py).

Every field is checked and every address reserved before the first device is made; a
failure after that undoes what was done, so a failed ADD leaves nothing behind.
"""
from __future__ import annotations

import os

from . import ipam, nft, portmap, records
from .addr import IP, parse_cidr, parse_ip
from .errors import GENERIC, UNKNOWN_CONTAINER, UNSUPPORTED_FIELD, CNIError, bad_config
from .netns import Inside, open_netns
from .rtnl import RTNL, NetlinkError

DEFAULT_BRIDGE = "cni0"
IFNAMSIZ = 16
EEXIST = 17


class Conf:
    """The network configuration (one plugin's object, as the runtime sends it)."""

    def __init__(self, raw: dict, state_dir: str, command: str = "ADD"):
        self.raw = raw
        self.name = raw["name"]
        self.state_dir = state_dir
        self.bridge = _opt(raw, "bridge", str, DEFAULT_BRIDGE)
        check_ifname(self.bridge, "bridge")
        self.is_default_gw = _opt(raw, "isDefaultGateway", bool, False)
        self.is_gw = _opt(raw, "isGateway", bool, False) or self.is_default_gw
        self.force_address = _opt(raw, "forceAddress", bool, False)
        self.ip_masq = _opt(raw, "ipMasq", bool, False)
        self.hairpin = _opt(raw, "hairpinMode", bool, False)
        self.promisc = _opt(raw, "promiscMode", bool, False)
        self.mtu = _opt(raw, "mtu", int, 0)
        if self.mtu and not 68 <= self.mtu <= 65535:
            raise bad_config("mtu", f"{self.mtu} is not an MTU (68-65535)")
        if self.hairpin and self.promisc:
            raise bad_config("hairpinMode", "cannot be set together with promiscMode")
        for key in ("vlan", "vlanTrunk", "macspoofchk"):
            if raw.get(key):
                raise CNIError(UNSUPPORTED_FIELD, f"{key}: not supported by runner-cni")
        ipam_raw = raw.get("ipam") or {}
        if not isinstance(ipam_raw, dict):
            raise bad_config("ipam", "must be an object")
        kind = ipam_raw.get("type", "")
        if kind in ("", None):
            self.ipam = None  # layer 2 only, as the reference without ipam
            if self.ip_masq:
                raise bad_config("ipMasq", "needs addresses (an ipam section)")
        elif kind not in ("host-local", "runner-cni"):
            raise CNIError(UNSUPPORTED_FIELD, f"ipam.type: {kind!r} is not supported (runner-cni has "
                           "host-local built in)")
        else:
            self.ipam = ipam.Config(ipam_raw, self.name, state_dir)
        # DEL releases what the container holds, found by its id, whatever runtimeConfig
        # says (the spec asks DEL to succeed where it can; a runtime that sent ADD a value
        # we refused must still be able to remove its pod): a runtimeConfig that cannot be
        # read leaves the mappings unknown, and DEL looks for rules of this attachment
        self.mappings_unknown = False
        try:
            rc = raw.get("runtimeConfig") or {}
            if not isinstance(rc, dict):
                raise bad_config("runtimeConfig", "must be an object")
            self.mappings = portmap.parse(rc.get("portMappings"))
        except CNIError:
            if command != "DEL":
                raise
            self.mappings, self.mappings_unknown = [], True
        if self.mappings and self.ipam is None and command != "DEL":
            raise bad_config("runtimeConfig.portMappings", "needs addresses (an ipam section)")
        dns = raw.get("dns")
        self.dns = dns if isinstance(dns, dict) else {}

    @property
    def needs_nft(self) -> bool:
        return self.ip_masq or bool(self.mappings) or self.mappings_unknown


def _opt(raw: dict, key: str, kind: type, default):
    v = raw.get(key, default)
    if v is None:
        return default
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise bad_config(key, f"must be a {'boolean' if kind is bool else kind.__name__}")
    return v


def check_ifname(name: str, field: str) -> None:
    if (not name or len(name.encode()) >= IFNAMSIZ or name in (".", "..")
            or any(c in name for c in "/:") or any(c.isspace() for c in name)):
        raise bad_config(field, f"{name!r} is not a valid interface name (1-15 bytes, no '/', "
                         "':' or whitespace)")


class Args:
    """The CNI_* environment of one call."""

    def __init__(self, cid: str, netns: str, ifname: str):
        self.cid, self.netns, self.ifname = cid, netns, ifname


# ---- ADD ---------------------------------------------------------------------------------

def add(conf: Conf, args: Args) -> dict:
    try:
        nsfd = open_netns(args.netns)
    except OSError as e:
        raise CNIError(UNKNOWN_CONTAINER, f"CNI_NETNS: cannot open {args.netns}",
                       e.strerror or str(e)) from None
    host = cont = None
    undo = []
    try:
        host = RTNL()
        with Inside(nsfd):
            cont = RTNL()
        if cont.link(args.ifname):
            raise CNIError(GENERIC, f"container veth name provided ({args.ifname}) already exists")
        if conf.needs_nft:
            nft._exe()  # say it is missing before anything is made
        allocs = []
        if conf.ipam:
            pool = ipam.Pool(conf.ipam)
            allocs = pool.allocate(args.cid, args.ifname)
            undo.append(lambda: pool.release(args.cid, args.ifname))
        br = ensure_bridge(host, conf)
        veth = make_veth(host, conf, br, nsfd, args.ifname)
        undo.append(lambda: _del_link(host, veth))
        if conf.hairpin:
            host.set_link(veth.index, hairpin=True)
        routes = container_routes(conf, allocs)
        with Inside(nsfd):
            inner = configure_container(cont, args.ifname, allocs, routes)
        if conf.is_gw:
            for a in allocs:
                ensure_addr(host, br, IP(a.ip.family, a.gateway.value, a.ip.prefix),
                            conf.force_address)
            for v6 in {a.ip.v6 for a in allocs}:
                enable_forwarding(v6)
        rules = None
        if conf.needs_nft:
            os.makedirs(conf.state_dir, 0o700, exist_ok=True)
            lock = nft_lock(conf)
            rules = nft.plan(nft.attachment_name(conf.name, args.cid, args.ifname),
                             [a.ip for a in allocs], conf.ip_masq, conf.mappings)
            undo.append(lambda: nft.release(rules.name, rules.record(), lock))
            nft.apply(rules, lock)
            if conf.mappings and any(not a.ip.v6 for a in allocs):
                # 127.0.0.1:hostPort → container: let the bridge route loopback sources
                _sysctl(f"net/ipv4/conf/{conf.bridge}/route_localnet", "1")
        # as they are now, for the result (the veth's MAC, the bridge's flags)
        br = host.link(name=conf.bridge)
        veth = host.link(index=veth.index)
        result = make_result(conf, args, br, veth, inner, allocs, routes)
        records.save(conf.state_dir, conf.name, args.cid, args.ifname, {
            "hostInterface": veth.name, "bridge": conf.bridge, "netns": args.netns,
            "ips": [a.ip.cidr for a in allocs],
            "nft": rules.record() if rules else None,
            "portMappings": [m.json() for m in conf.mappings], "result": result})
        undo.clear()
        return result
    except NetlinkError as e:
        raise CNIError(GENERIC, f"netlink: {e.strerror}") from None
    finally:
        for fn in reversed(undo):
            try:
                fn()
            except Exception:  # undo what can be undone; the first error is the one to report
                pass
        for s in (host, cont):
            if s is not None:
                s.close()
        os.close(nsfd)


def nft_lock(conf: Conf) -> str:
    return os.path.join(conf.state_dir, "nft.lock")


def ensure_bridge(host: RTNL, conf: Conf):
    made = True
    try:
        host.add_bridge(conf.bridge, conf.mtu)
    except NetlinkError as e:
        if e.errno != EEXIST:
            raise CNIError(GENERIC, f"failed to create bridge {conf.bridge!r}", e.strerror) from None
        made = False
    br = host.link(name=conf.bridge)
    if br is None:
        raise CNIError(GENERIC, f"bridge {conf.bridge!r} disappeared while being set up")
    if br.kind != "bridge":
        raise CNIError(GENERIC, f"{conf.bridge!r} already exists but is not a bridge")
    if conf.ipam and any(rs[0].subnet.v6 for rs in conf.ipam.rangesets):
        _sysctl(f"net/ipv6/conf/{conf.bridge}/accept_ra", "0")  # we own its routes
    if made and br.kind == "bridge":
        # its MAC set explicitly: otherwise the bridge takes the lowest of its ports' and
        # changes as containers come and go (the reference sets it the same way)
        host.set_link(br.index, mac=br.mac)
    if not br.up or (conf.promisc and not br.promisc):
        host.set_link(br.index, up=True, promisc=True if conf.promisc else None)
    return br


def make_veth(host: RTNL, conf: Conf, br, nsfd: int, ifname: str):
    for _ in range(5):
        name = "veth" + os.urandom(4).hex()
        try:
            host.add_veth(name, ifname, nsfd, conf.mtu, br.index)
        except NetlinkError as e:
            if e.errno == EEXIST and host.link(name=name):
                continue  # the random host name was taken: another one
            raise CNIError(GENERIC, f"failed to create the veth pair {name}/{ifname}",
                           e.strerror) from None
        link = host.link(name=name)
        if link is None:
            raise CNIError(GENERIC, f"the veth {name} vanished after it was made")
        return link
    raise CNIError(GENERIC, "no free host veth name after 5 tries")


def container_routes(conf: Conf, allocs: list) -> list:
    """(dst, gw or None as given, gw to use) for the container: the pool's routes (a route
    without gw goes via the gateway of its family) and, with isDefaultGateway, a default
    route per family."""
    gws = {a.ip.family: a.gateway for a in allocs}
    out = []
    for dst, gw in (conf.ipam.routes if conf.ipam else []):
        if dst.family not in gws:
            continue
        out.append((dst, gw, gw or gws[dst.family]))
    if conf.is_default_gw:
        for fam, gw in gws.items():
            if not any(d.family == fam and d.prefix == 0 and g for d, g, _ in out):
                out.append((IP(fam, 0, 0), gw, gw))
    return out


def configure_container(cont: RTNL, ifname: str, allocs: list, routes: list):
    """Runs inside the container's namespace (for the sysctls)."""
    if any(a.ip.v6 for a in allocs):
        _sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "0")
    _sysctl(f"net/ipv4/conf/{ifname}/arp_notify", "1")
    link = cont.link(name=ifname)
    if link is None:
        raise CNIError(GENERIC, f"{ifname} is not in the container after it was made")
    cont.set_link(link.index, up=True)
    for a in allocs:
        cont.add_addr(link.index, a.ip)
    for dst, _, gw in routes:
        try:
            cont.add_route(dst, gw, link.index)
        except NetlinkError as e:
            if e.errno != EEXIST:
                raise CNIError(GENERIC, f"failed to add the route {dst.cidr} via {gw} in the "
                               "container", e.strerror) from None
    return cont.link(index=link.index)


def ensure_addr(host: RTNL, br, gw: IP, force: bool) -> None:
    for a in host.addrs(index=br.index, family=gw.family):
        if a.ip == gw:
            return
        if a.scope != 0:  # link-local (fe80::/64): every interface has one
            continue
        if not gw.v6 or a.ip.overlaps(gw):
            if force:
                host.del_addr(br.index, a.ip)
            else:
                raise CNIError(GENERIC, f"{br.name!r} already has an IP address different from "
                               f"{gw.cidr}: {a.ip.cidr}")
    try:
        host.add_addr(br.index, gw)
    except NetlinkError as e:
        if e.errno != EEXIST:
            raise CNIError(GENERIC, f"could not add {gw.cidr} to {br.name!r}", e.strerror) from None


def enable_forwarding(v6: bool) -> None:
    _sysctl("net/ipv6/conf/all/forwarding" if v6 else "net/ipv4/ip_forward", "1")


def _sysctl(name: str, value: str) -> None:
    """Write a sysctl of the current network namespace when it differs; a missing one
    (IPv6 disabled, say) is not an error, as in the reference plugins."""
    p = "/proc/sys/" + name
    try:
        with open(p) as f:
            if f.read().strip() == value:
                return
        with open(p, "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CNIError(GENERIC, f"sysctl {name.replace('/', '.')}={value}", e.strerror) from None


def _del_link(host: RTNL, link) -> None:
    try:
        host.del_link(link.index)
    except NetlinkError as e:
        if e.errno not in (19, 2):
            raise


def make_result(conf: Conf, args: Args, br, veth, inner, allocs: list, routes: list) -> dict:
    result = {"cniVersion": conf.raw.get("cniVersion", "1.0.0"),
              "interfaces": [{"name": br.name, "mac": br.mac},
                             {"name": veth.name, "mac": veth.mac},
                             {"name": inner.name, "mac": inner.mac, "sandbox": args.netns}]}
    if allocs:
        result["ips"] = [{"interface": 2, "address": a.ip.cidr, "gateway": str(a.gateway)}
                         for a in allocs]
    if routes:
        result["routes"] = [dict({"dst": d.network.cidr}, **({"gw": str(g)} if g else {}))
                            for d, g, _ in routes]
    result["dns"] = conf.dns
    return result


# ---- DEL ---------------------------------------------------------------------------------

def delete(conf: Conf, args: Args) -> None:
    """Everything of (container id, ifname) on this network goes; what is gone already is
    fine (DEL may come twice, or after the namespace died)."""
    rec = records.load(conf.state_dir, conf.name, args.cid, args.ifname) or {}
    with RTNL() as host:
        if args.netns:
            try:
                nsfd = open_netns(args.netns)
            except OSError:
                nsfd = -1  # the namespace is gone, and the container's end with it
            if nsfd >= 0:
                try:
                    with Inside(nsfd):
                        cont = RTNL()
                    with cont:
                        link = cont.link(name=args.ifname)
                        if link is not None and link.kind == "veth":
                            _del_link(cont, link)
                finally:
                    os.close(nsfd)
        name = rec.get("hostInterface")
        if name:
            link = host.link(name=name)
            if link is not None and link.kind == "veth":
                _del_link(host, link)
    if (rec.get("nft") or conf.needs_nft) and nft.available():
        nft.release(nft.attachment_name(conf.name, args.cid, args.ifname), rec.get("nft"),
                    nft_lock(conf))
    if conf.ipam:
        ipam.Pool(conf.ipam).release(args.cid, args.ifname)
    records.remove(conf.state_dir, conf.name, args.cid, args.ifname)


# ---- CHECK -------------------------------------------------------------------------------

def check(conf: Conf, args: Args, prev: dict) -> None:
    """The attachment still is what the ADD made (prevResult): raise on the first drift."""
    def drift(msg: str) -> CNIError:
        return CNIError(GENERIC, msg)

    ifaces = prev.get("interfaces") or []
    by_name = {i.get("name"): i for i in ifaces if isinstance(i, dict)}
    try:
        nsfd = open_netns(args.netns)
    except OSError as e:
        raise CNIError(UNKNOWN_CONTAINER, f"CNI_NETNS: cannot open {args.netns}",
                       e.strerror or str(e)) from None
    try:
        with RTNL() as host:
            with Inside(nsfd):
                cont = RTNL()
            with cont:
                br = host.link(name=conf.bridge)
                if br is None or br.kind != "bridge":
                    raise drift(f"bridge {conf.bridge!r} was not found in the host namespace")
                if br.promisc != conf.promisc:
                    raise drift(f"bridge {conf.bridge!r}: promiscuous mode is {br.promisc}, "
                                f"the configuration says {conf.promisc}")
                inner = cont.link(name=args.ifname)
                if inner is None or inner.kind != "veth":
                    raise drift(f"interface {args.ifname} was not found in the container")
                want = by_name.get(args.ifname, {})
                if want.get("mac") and want["mac"] != inner.mac:
                    raise drift(f"{args.ifname}: MAC is {inner.mac}, was {want['mac']}")
                veth = None
                for i in ifaces:
                    if i.get("sandbox") or i.get("name") in (conf.bridge, None):
                        continue
                    link = host.link(name=i["name"])
                    if link and link.kind == "veth" and link.peer == inner.index:
                        veth = link
                        break
                if veth is None or inner.peer != veth.index:
                    raise drift(f"the host end of {args.ifname}'s veth pair was not found")
                if veth.master != br.index:
                    raise drift(f"{veth.name} is no longer a port of {conf.bridge!r}")
                have = {a.ip for a in cont.addrs(index=inner.index)}
                for ipc in prev.get("ips") or []:
                    ip = parse_cidr(ipc["address"])
                    if ip not in have:
                        raise drift(f"{args.ifname} lost its address {ip.cidr}")
                rts = cont.routes()
                for r in prev.get("routes") or []:
                    dst = parse_cidr(r["dst"])
                    gw = parse_ip(r["gw"]) if r.get("gw") else None
                    if not any(x.dst.network == dst.network and x.dst.prefix == dst.prefix
                               and (gw is None or (x.gw and x.gw.value == gw.value)) for x in rts):
                        raise drift(f"the container's route to {dst.cidr} is missing")
    finally:
        os.close(nsfd)
    ips = [parse_cidr(i["address"]) for i in prev.get("ips") or []]
    if conf.ipam:
        owned = set(ipam.Pool(conf.ipam).owned(args.cid, args.ifname))
        for ip in ips:
            if str(ip) not in owned:
                raise drift(f"the pool no longer holds {ip} for {args.cid}")
    if conf.needs_nft:
        want = nft.plan(nft.attachment_name(conf.name, args.cid, args.ifname), ips,
                        conf.ip_masq, conf.mappings)
        text = nft.listing()
        if text is None:
            raise drift(f"the nftables table inet {nft.TABLE} is missing")
        for frag in nft.expected_fragments(want):
            if frag not in text:
                raise drift(f"nftables table inet {nft.TABLE} lacks {frag!r} of {want.name}")
