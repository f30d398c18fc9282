"""runtimeConfig.portMappings (the `portMappings` capability, as the reference `portmap`
plugin reads it): host port → container port, TCP, UDP or SCTP, on one host address or all.
The rules themselves are in nft.py."""
from __future__ import annotations

from .addr import IP, parse_ip
from .errors import bad_config

PROTOCOLS = ("tcp", "udp", "sctp")


class PortMapping:
    __slots__ = ("host_port", "container_port", "protocol", "host_ip")

    def __init__(self, host_port: int, container_port: int, protocol: str, host_ip: IP | None):
        self.host_port, self.container_port = host_port, container_port
        # 0.0.0.0 or :: (value 0): every address of that family only, as portmap does
        self.protocol, self.host_ip = protocol, host_ip

    def json(self) -> dict:
        out = {"hostPort": self.host_port, "containerPort": self.container_port,
               "protocol": self.protocol}
        if self.host_ip is not None:
            out["hostIP"] = str(self.host_ip)
        return out


def _get(m: dict, key: str):
    """m[key] as Go's encoding/json finds a tagged field, which the reference portmap
    plugin relies on: the exact key first, else any key equal to it ignoring case.
    containerd 1.6 (go-cni) sends {"HostPort", "ContainerPort", "Protocol", "HostIP"}: its
    structs have no JSON tags."""
    if key in m:
        return m[key]
    low = key.lower()
    for k, v in m.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return None


def parse(raw, field: str = "runtimeConfig.portMappings") -> list:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_config(field, "must be a list")
    out, seen = [], set()
    for i, m in enumerate(raw):
        f = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise bad_config(f, "must be an object")
        ports = []
        for key in ("hostPort", "containerPort"):
            v = _get(m, key)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 65536:
                raise bad_config(f"{f}.{key}", f"{v!r} is not a port (1-65535)")
            ports.append(v)
        proto = (_get(m, "protocol") or "tcp")
        if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
            raise bad_config(f"{f}.protocol", f"{proto!r} is not one of {', '.join(PROTOCOLS)}")
        proto = proto.lower()
        host_ip = None
        text = _get(m, "hostIP") or ""
        if text:
            try:
                host_ip = parse_ip(text)
            except ValueError as e:
                raise bad_config(f"{f}.hostIP", str(e)) from None
        key = (ports[0], proto, str(host_ip))
        if key in seen:
            raise bad_config(f, f"host port {proto}/{ports[0]} is mapped twice")
        seen.add(key)
        out.append(PortMapping(ports[0], ports[1], proto, host_ip))
    return out
