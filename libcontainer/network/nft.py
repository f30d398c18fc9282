"""NAT rules of one attachment (ipMasq, port mappings) as an nftables table of its own.

Every attachment gets `table inet rcni-<hash of network, container id, ifname>` with its
own nat base chains. Adding is one atomic `nft -f` batch that replaces the table whole;
deleting is `table …{}; delete table …` — also one batch, and a no-op when it is gone, so
DEL is idempotent and releases exactly this container's rules, with no rule handles to
track and no shared chain to edit (the reference plugins share CNI-HOSTPORT-* chains and
per-container CNI-DN-* chains in iptables' nat table; the effect on packets is the same).

The `nft` CLI is run directly (posix_spawn: `subprocess` alone costs ~12 ms to import)."""
from __future__ import annotations

import os

from .errors import GENERIC, CNIError

PREFIX = "rcni-"
SEARCH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin")


def table_name(network: str, cid: str, ifname: str) -> str:
    from _sha256 import sha256

    return PREFIX + sha256(f"{network}\0{cid}\0{ifname}".encode()).hexdigest()[:20]


def _exe() -> str:
    dirs = os.environ.get("PATH", "").split(":") + list(SEARCH)
    for d in dirs:
        p = os.path.join(d or ".", "nft")
        if os.access(p, os.X_OK):
            return p
    raise CNIError(GENERIC, "nft (nftables) is not installed: it is needed for ipMasq and "
                   "port mappings")


def available() -> bool:
    try:
        _exe()
        return True
    except CNIError:
        return False


def run(script: str, *args: str, lock: str = "") -> tuple:
    """`nft ARGS` with `script` on stdin → (status, stdout+stderr). With `lock` (a file),
    one at a time: nft reads the whole ruleset before it commits a batch and starts over
    when another commit came in between, so fifty at once take many times fifty times
    one (16 s against 2 s for 50 DELs here)."""
    exe = _exe()
    lock_fd = -1
    if lock:
        import fcntl

        os.makedirs(os.path.dirname(lock), 0o700, exist_ok=True)
        lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        return _run(exe, script, args)
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)


def _run(exe: str, script: str, args: tuple) -> tuple:
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    try:
        pid = os.posix_spawn(exe, [exe, *args], {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                             file_actions=[(os.POSIX_SPAWN_DUP2, r_in, 0),
                                           (os.POSIX_SPAWN_DUP2, w_out, 1),
                                           (os.POSIX_SPAWN_DUP2, w_out, 2)])
    finally:
        os.close(r_in)
        os.close(w_out)
    try:
        os.write(w_in, script.encode())
    finally:
        os.close(w_in)
    chunks = []
    while True:
        b = os.read(r_out, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r_out)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def rules(ips: list, subnets: list, masq: bool, mappings: list, comment: str) -> str:
    """The table's body. `ips` and `subnets` are the container's addresses and their
    networks (IP objects, one per family at most used for each)."""
    post, ports = [], []
    for ip, net in zip(ips, subnets):
        fam, any_mc = ("ip6", "ff00::/8") if ip.v6 else ("ip", "224.0.0.0/4")
        if mappings:
            # the reply of a mapped connection must come back through us: masquerade
            # what was DNATed from the host itself (127.0.0.1, route_localnet) or from a
            # neighbour on the bridge (hairpin), as portmap's CNI-HOSTPORT-MASQ does
            if not ip.v6:
                post.append(f"ip daddr {ip} ip saddr 127.0.0.0/8 ct status dnat masquerade")
            post.append(f"{fam} daddr {ip} {fam} saddr {net.cidr} ct status dnat masquerade")
        if masq:
            post.append(f"{fam} saddr {ip} {fam} daddr != {net.cidr} {fam} daddr != {any_mc} masquerade")
        for m in mappings:
            if m.host_ip is not None and m.host_ip.v6 != ip.v6:
                continue
            nfproto = "ipv6" if ip.v6 else "ipv4"
            daddr = f"{fam} daddr {m.host_ip} " if m.host_ip is not None and m.host_ip.value else ""
            to = f"[{ip}]:{m.container_port}" if ip.v6 else f"{ip}:{m.container_port}"
            ports.append(f"meta nfproto {nfproto} {daddr}{m.protocol} dport {m.host_port} "
                         f"dnat {fam} to {to}")
    body = [f'comment "{comment}"',
            "chain postrouting { type nat hook postrouting priority srcnat; policy accept;",
            *post, "}"]
    if ports:
        body += ["chain hostports {", *ports, "}",
                 "chain prerouting { type nat hook prerouting priority dstnat; policy accept;",
                 "fib daddr type local jump hostports", "}",
                 "chain output { type nat hook output priority -100; policy accept;",
                 "fib daddr type local jump hostports", "}"]
    return "\n".join(body)


def apply(name: str, body: str, lock: str = "") -> None:
    """Create or replace the table, atomically."""
    script = f"table inet {name} {{}}\ndelete table inet {name}\ntable inet {name} {{\n{body}\n}}\n"
    code, out = run(script, "-f", "-", lock=lock)
    if code != 0:
        raise CNIError(GENERIC, f"nftables: adding table inet {name} failed", out.strip())


def delete(name: str, lock: str = "") -> None:
    """Remove the table; nothing happens when it is not there."""
    code, out = run(f"table inet {name} {{}}\ndelete table inet {name}\n", "-f", "-", lock=lock)
    if code != 0:
        raise CNIError(GENERIC, f"nftables: deleting table inet {name} failed", out.strip())


def listing(name: str) -> str | None:
    """The table as `nft list` prints it; None when there is none."""
    code, out = run("", "list", "table", "inet", name)
    return out if code == 0 else None


def expected_fragments(ips: list, masq: bool, mappings: list) -> list:
    """Pieces of `nft list` output CHECK looks for."""
    out = []
    for ip in ips:
        if masq:
            out.append(f"saddr {ip} ")
        for m in mappings:
            if m.host_ip is not None and m.host_ip.v6 != ip.v6:
                continue
            to = f"[{ip}]:{m.container_port}" if ip.v6 else f"{ip}:{m.container_port}"
            out.append(f"dport {m.host_port} dnat {'ip6' if ip.v6 else 'ip'} to {to}")
    return out

