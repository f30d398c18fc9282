"""The few rtnetlink requests the CNI plugin makes (links, addresses, routes), over a raw
NETLINK_ROUTE socket.

Why not pyroute2, the project's netlink library: the plugin runs once per container, and
any pyroute2 import runs its package __init__, which loads all of it (~150-250 ms here, ten
times a reference plugin's whole ADD); even its deepest submodules with the package
bypassed pull asyncio (~80 ms). The messages needed are a dozen fixed layouts.
"""
from __future__ import annotations

import os
import struct

import _socket

from .addr import IP

AF_NETLINK, NETLINK_ROUTE, SOL_NETLINK = 16, 0, 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
NLMSG_ERROR, NLMSG_DONE = 2, 3
F_REQUEST, F_MULTI, F_ACK, F_DUMP = 0x1, 0x2, 0x4, 0x300
F_REPLACE, F_EXCL, F_CREATE = 0x100, 0x200, 0x400
F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFF_UP, IFF_PROMISC = 0x1, 0x100

IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
IFA_F_NODAD, IFA_F_TENTATIVE = 0x02, 0x40

RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")


def attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * (-n % 4)


def u32(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=I", v))


def string(kind: int, s: str) -> bytes:
    return attr(kind, s.encode() + b"\0")


def parse_attrs(data: bytes, off: int = 0) -> dict:
    """type → payload (the last of a type wins)."""
    out = {}
    while off + 4 <= len(data):
        n, kind = struct.unpack_from("=HH", data, off)
        if n < 4:
            break
        out[kind & ~NLA_F_NESTED & 0x7FFF] = data[off + 4:off + n]
        off += (n + 3) & ~3
    return out


def _str(b: bytes | None) -> str:
    return b.split(b"\0", 1)[0].decode() if b else ""


def _u32(b: bytes | None) -> int:
    return struct.unpack("=I", b[:4])[0] if b else 0


def mac(b: bytes | None) -> str:
    return ":".join(f"{x:02x}" for x in b) if b else ""


class NetlinkError(OSError):
    """errno plus the kernel's extended-ack message, when it sent one."""


class Link:
    __slots__ = ("index", "name", "flags", "mac", "mtu", "master", "kind", "peer", "slave_kind")

    def __init__(self, payload: bytes):
        _, _, self.index, self.flags, _ = _IFINFO.unpack_from(payload)
        a = parse_attrs(payload, _IFINFO.size)
        self.name = _str(a.get(IFLA_IFNAME))
        self.mac = mac(a.get(IFLA_ADDRESS))
        self.mtu = _u32(a.get(IFLA_MTU))
        self.master = _u32(a.get(IFLA_MASTER))
        self.peer = _u32(a.get(IFLA_LINK))  # a veth's peer ifindex (in its namespace)
        info = parse_attrs(a.get(IFLA_LINKINFO, b""))
        self.kind = _str(info.get(IFLA_INFO_KIND))
        self.slave_kind = _str(info.get(IFLA_INFO_SLAVE_KIND))

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)


class Addr:
    __slots__ = ("ip", "index", "flags", "scope")

    def __init__(self, payload: bytes):
        family, prefix, flags, self.scope, self.index = _IFADDR.unpack_from(payload)
        a = parse_attrs(payload, _IFADDR.size)
        raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS) or b""
        self.ip = IP(family, int.from_bytes(raw, "big"), prefix)
        self.flags = _u32(a[IFA_FLAGS]) if IFA_FLAGS in a else flags


class Route:
    __slots__ = ("dst", "gw", "oif", "table", "type")

    def __init__(self, payload: bytes):
        family, dst_len, _, _, table, _, _, self.type, _ = _RTMSG.unpack_from(payload)
        a = parse_attrs(payload, _RTMSG.size)
        self.table = _u32(a[RTA_TABLE]) if RTA_TABLE in a else table
        self.dst = IP(family, int.from_bytes(a.get(RTA_DST, b""), "big"), dst_len)
        gw = a.get(RTA_GATEWAY)
        self.gw = IP(family, int.from_bytes(gw, "big")) if gw else None
        self.oif = _u32(a.get(RTA_OIF))


class RTNL:
    """A NETLINK_ROUTE socket in the namespace the thread is in when it is made."""

    def __init__(self):
        self.sock = _socket.socket(AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RTNL":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, kind: int, body: bytes, flags: int = 0) -> list:
        """Send one request; → the payloads of the replies (a dump's many). Errors raise
        NetlinkError with the kernel's errno."""
        self.seq += 1
        seq = self.seq
        dump = flags & F_DUMP == F_DUMP
        flags |= F_REQUEST | (0 if dump else F_ACK)
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags, seq, 0) + body)
        out = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _HDR.size <= len(data):
                n, t, fl, s, _ = _HDR.unpack_from(data, off)
                payload = data[off + _HDR.size:off + n]
                off += (n + 3) & ~3
                if s != seq:
                    continue
                if t == NLMSG_DONE:
                    return out
                if t == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err == 0:
                        return out
                    msg = ""
                    if fl & F_ACK_TLVS:
                        tl = parse_attrs(payload, 4 + _HDR.size)
                        msg = _str(tl.get(NLMSGERR_ATTR_MSG))
                    text = os.strerror(err) + (f" ({msg})" if msg else "")
                    raise NetlinkError(err, text)
                out.append(payload)
                if not dump:
                    return out

    # ---- links ------------------------------------------------------------------------

    def link(self, name: str = "", index: int = 0) -> Link | None:
        """One link by name or index; None when there is none."""
        body = _IFINFO.pack(0, 0, index, 0, 0) + (string(IFLA_IFNAME, name) if name else b"")
        try:
            return Link(self.request(RTM_GETLINK, body)[0])
        except NetlinkError as e:
            if e.errno in (19, 2):  # ENODEV, ENOENT
                return None
            raise

    def links(self) -> list:
        return [Link(p) for p in self.request(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0), F_DUMP)]

    def add_bridge(self, name: str, mtu: int = 0) -> None:
        """EEXIST when a link of that name exists (of whatever kind)."""
        attrs = string(IFLA_IFNAME, name) + (u32(IFLA_MTU, mtu) if mtu else b"")
        attrs += attr(IFLA_LINKINFO, string(IFLA_INFO_KIND, "bridge"))
        self.request(RTM_NEWLINK, _IFINFO.pack(0, 0, 0, 0, 0) + attrs, F_CREATE | F_EXCL)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, mtu: int = 0,
                 master: int = 0) -> None:
        """A veth pair made in one request: `name` here (up, enslaved to `master`), `peer`
        straight in the namespace of `peer_netns_fd`, so the container's name is never
        taken on the host even for a moment."""
        m = u32(IFLA_MTU, mtu) if mtu else b""
        peer_msg = (_IFINFO.pack(0, 0, 0, 0, 0) + string(IFLA_IFNAME, peer) + m
                    + u32(IFLA_NET_NS_FD, peer_netns_fd))
        info = string(IFLA_INFO_KIND, "veth") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_msg))
        attrs = string(IFLA_IFNAME, name) + m + attr(IFLA_LINKINFO, info)
        if master:
            attrs += u32(IFLA_MASTER, master)
        self.request(RTM_NEWLINK, _IFINFO.pack(0, 0, 0, IFF_UP, IFF_UP) + attrs,
                     F_CREATE | F_EXCL)

    def set_link(self, index: int, up: bool | None = None, promisc: bool | None = None,
                 hairpin: bool | None = None, mac: str = "") -> None:
        flags = change = 0
        if up is not None:
            change |= IFF_UP
            flags |= IFF_UP if up else 0
        if promisc is not None:
            change |= IFF_PROMISC
            flags |= IFF_PROMISC if promisc else 0
        attrs = attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", ""))) if mac else b""
        if hairpin is not None:
            data = attr(IFLA_BRPORT_MODE, bytes([1 if hairpin else 0]))
            attrs += attr(IFLA_LINKINFO, string(IFLA_INFO_SLAVE_KIND, "bridge")
                         + attr(IFLA_INFO_SLAVE_DATA, data))
        self.request(RTM_NEWLINK, _IFINFO.pack(0, 0, index, flags, change) + attrs)

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, _IFINFO.pack(0, 0, index, 0, 0))

    # ---- addresses and routes ---------------------------------------------------------

    def addrs(self, index: int = 0, family: int = 0) -> list:
        out = [Addr(p) for p in self.request(RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, 0), F_DUMP)]
        return [a for a in out if not index or a.index == index]

    def add_addr(self, index: int, ip: IP, nodad: bool = True) -> None:
        """`ip` with its prefix; IPv4 gets the network's broadcast address, as `ip addr add
        … brd +` and the reference plugins do. EEXIST when it is there already."""
        flags = IFA_F_NODAD if nodad and ip.v6 else 0
        attrs = attr(IFA_LOCAL, ip.packed) + attr(IFA_ADDRESS, ip.packed)
        if not ip.v6 and ip.prefix < 31:
            attrs += attr(IFA_BROADCAST, ip.last.packed)
        if flags:
            attrs += u32(IFA_FLAGS, flags)
        self.request(RTM_NEWADDR, _IFADDR.pack(ip.family, ip.prefix, flags & 0xFF,
                                               RT_SCOPE_UNIVERSE, index) + attrs,
                     F_CREATE | F_EXCL)

    def del_addr(self, index: int, ip: IP) -> None:
        self.request(RTM_DELADDR, _IFADDR.pack(ip.family, ip.prefix, 0, 0, index)
                     + attr(IFA_LOCAL, ip.packed))

    def routes(self, family: int = 0) -> list:
        msgs = self.request(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), F_DUMP)
        return [r for r in map(Route, msgs) if r.table == RT_TABLE_MAIN]

    def add_route(self, dst: IP, gw: IP | None, oif: int) -> None:
        scope = RT_SCOPE_UNIVERSE if gw else RT_SCOPE_LINK
        attrs = u32(RTA_OIF, oif)
        if dst.prefix:
            attrs += attr(RTA_DST, dst.network.packed)
        if gw:
            attrs += attr(RTA_GATEWAY, gw.packed)
        body = _RTMSG.pack(dst.family, dst.prefix, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope,
                           RTN_UNICAST, 0) + attrs
        self.request(RTM_NEWROUTE, body, F_CREATE | F_EXCL)
