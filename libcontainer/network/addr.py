"""IP addresses and prefixes as (family, int) pairs.

The `ipaddress` module would do, but it costs ~4 ms of the plugin's start-up (it pulls in
functools and re); these few helpers over inet_pton cost nothing."""
from __future__ import annotations

from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton

BITS = {AF_INET: 32, AF_INET6: 128}


class IP:
    """One address (`value` as an int) with the prefix length of its network."""

    __slots__ = ("family", "value", "prefix")

    def __init__(self, family: int, value: int, prefix: int | None = None):
        self.family, self.value = family, value
        self.prefix = BITS[family] if prefix is None else prefix

    @property
    def bits(self) -> int:
        return BITS[self.family]

    @property
    def packed(self) -> bytes:
        return self.value.to_bytes(self.bits // 8, "big")

    @property
    def mask(self) -> int:
        return ((1 << self.bits) - 1) ^ ((1 << (self.bits - self.prefix)) - 1)

    @property
    def network(self) -> "IP":
        return IP(self.family, self.value & self.mask, self.prefix)

    @property
    def last(self) -> "IP":
        """The highest address of the network (IPv4's broadcast)."""
        return IP(self.family, self.network.value | ((1 << (self.bits - self.prefix)) - 1), self.prefix)

    def contains(self, other: "IP") -> bool:
        return (self.family == other.family and self.prefix <= other.prefix
                and other.value & self.mask == self.network.value)

    def overlaps(self, other: "IP") -> bool:
        return self.contains(other) or other.contains(self)

    def with_value(self, value: int) -> "IP":
        return IP(self.family, value, self.prefix)

    @property
    def v6(self) -> bool:
        return self.family == AF_INET6

    def __str__(self) -> str:  # the address alone
        return inet_ntop(self.family, self.packed)

    @property
    def cidr(self) -> str:
        return f"{self}/{self.prefix}"

    def __repr__(self) -> str:
        return f"IP({self.cidr})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, IP) and (self.family, self.value, self.prefix)
                == (other.family, other.value, other.prefix))

    def __hash__(self) -> int:
        return hash((self.family, self.value, self.prefix))


def parse_ip(text: str) -> IP:
    """'10.0.0.1' or 'fd00::1' → IP with a full-length prefix; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an IP address")
    family = AF_INET6 if ":" in text else AF_INET
    try:
        return IP(family, int.from_bytes(inet_pton(family, text), "big"))
    except OSError:
        raise ValueError(f"{text!r} is not an IP address") from None


def parse_cidr(text: str, strict: bool = False) -> IP:
    """'10.0.0.5/24' → IP(10.0.0.5, prefix 24); with strict, host bits must be zero."""
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(f"{text!r} is not a CIDR (address/prefix)")
    a, _, p = text.partition("/")
    ip = parse_ip(a)
    if not p.isdigit() or int(p) > ip.bits:
        raise ValueError(f"{text!r}: the prefix length must be 0-{ip.bits}")
    ip.prefix = int(p)
    if strict and ip.value != ip.network.value:
        raise ValueError(f"{text!r} has host bits set (did you mean {ip.network.cidr}?)")
    return ip
