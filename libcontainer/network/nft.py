"""NAT rules of the attachments (ipMasq, port mappings) in one nftables table, run through
the `nft` CLI (posix_spawn: `subprocess` alone costs ~12 ms to import).

    table inet runner-cni {
      map masq4, masq6 { container address : jump <att>-masq }     ipMasq
      map dst4, dst6   { container address : jump <att>-hairpin }  mapped ports, reached
                                                                     from the host or a neighbour
      map ports        { protocol . host port : jump <att>-ports }  the DNATs
      chain postrouting (nat)      ip saddr vmap @masq4, ip6 saddr vmap @masq6,
                                   ip daddr vmap @dst4, ip6 daddr vmap @dst6
      chain prerouting, output (nat)  fib daddr type local meta l4proto . th dport vmap @ports
      chain <att>-masq, <att>-hairpin, <att>-ports   one attachment's rules
    }

<att> is rcni-<sha256(network, container id, ifname)[:16]>. An ADD is one atomic batch
(the shared part declared again, idempotently; the attachment's chains replaced; its map
elements added — an element of another attachment under the same key, a host port taken,
fails the whole batch). A DEL is one batch too, which first re-adds each element with our
verdict: it fails rather than remove another attachment's element under a reused key, and
then the elements are found by listing. Lookups are by map, not by a chain per container:
the cost of a packet and of an ADD or DEL does not grow with the number of containers
(per-container tables with their own hooks took 130-160 ms per ADD/DEL at 150 containers
here, this 20 ms). The reference plugins keep the same rules in iptables' nat table.
"""
from __future__ import annotations

import os

from .errors import GENERIC, CNIError

TABLE = "runner-cni"
PREFIX = "rcni-"
MAPS = {"masq4": "ipv4_addr", "masq6": "ipv6_addr", "dst4": "ipv4_addr", "dst6": "ipv6_addr",
        "ports": "inet_proto . inet_service"}
SEARCH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin")

BASE = [f"add table inet {TABLE}"] + [
    f"add map inet {TABLE} {m} {{ type {t} : verdict; }}" for m, t in MAPS.items()] + [
    f"add chain inet {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
    f"add chain inet {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
    f"add chain inet {TABLE} output {{ type nat hook output priority -100; policy accept; }}",
    # the shared chains' rules are the same for everyone: replaced, so never doubled
    f"flush chain inet {TABLE} postrouting",
    f"add rule inet {TABLE} postrouting ip saddr vmap @masq4",
    f"add rule inet {TABLE} postrouting ip6 saddr vmap @masq6",
    f"add rule inet {TABLE} postrouting ip daddr vmap @dst4",
    f"add rule inet {TABLE} postrouting ip6 daddr vmap @dst6",
    f"flush chain inet {TABLE} prerouting",
    f"add rule inet {TABLE} prerouting fib daddr type local meta l4proto . th dport vmap @ports",
    f"flush chain inet {TABLE} output",
    f"add rule inet {TABLE} output fib daddr type local meta l4proto . th dport vmap @ports"]


def attachment_name(network: str, cid: str, ifname: str) -> str:
    from _sha256 import sha256

    return PREFIX + sha256(f"{network}\0{cid}\0{ifname}".encode()).hexdigest()[:16]


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
    one at a time: nft reads the ruleset before it commits a batch and starts over when
    another commit came in between, so fifty at once take many times fifty times one."""
    exe = _exe()
    lock_fd = -1
    # the lock lives in the state directory, which an ADD makes: a DEL or a `network rm`
    # that finds none makes none (and had no ADD to race with)
    if lock and os.path.isdir(os.path.dirname(lock)):
        import fcntl

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


class Plan:
    """One attachment's chains (name → rules) and map elements ((map, key, chain))."""

    def __init__(self, name: str):
        self.name = name
        self.chains: dict = {}
        self.elements: list = []

    def record(self) -> dict:
        return {"chains": list(self.chains), "elements": [list(e) for e in self.elements]}


def plan(name: str, ips: list, masq: bool, mappings: list) -> Plan:
    """`ips`: the container's addresses (IP objects with their prefix)."""
    p = Plan(name)
    masq_rules, hairpin, ports = [], [], []
    for ip in ips:
        fam, suffix, any_mc = ("ip6", "6", "ff00::/8") if ip.v6 else ("ip", "4", "224.0.0.0/4")
        net = ip.network.cidr
        if masq:
            masq_rules.append(f"{fam} daddr != {net} {fam} daddr != {any_mc} masquerade")
            p.elements.append((f"masq{suffix}", str(ip), f"{name}-masq"))
        if mappings:
            # the reply of a mapped connection must come back through us: masquerade
            # what was DNATed from the host itself (127.0.0.1, route_localnet) or from a
            # neighbour on the bridge (hairpin), as portmap's CNI-HOSTPORT-MASQ does
            if not ip.v6:
                hairpin.append("ip saddr 127.0.0.0/8 ct status dnat masquerade")
            hairpin.append(f"{fam} saddr {net} ct status dnat masquerade")
            p.elements.append((f"dst{suffix}", str(ip), f"{name}-hairpin"))
        for m in mappings:
            if m.host_ip is not None and m.host_ip.v6 != ip.v6:
                continue
            nfproto = "ipv6" if ip.v6 else "ipv4"
            daddr = f"{fam} daddr {m.host_ip} " if m.host_ip is not None and m.host_ip.value else ""
            to = f"[{ip}]:{m.container_port}" if ip.v6 else f"{ip}:{m.container_port}"
            ports.append(f"meta nfproto {nfproto} {daddr}{m.protocol} dport {m.host_port} "
                         f"dnat {fam} to {to}")
    for m in mappings:
        key = f"{m.protocol} . {m.host_port}"
        if not any(e[0] == "ports" and e[1] == key for e in p.elements):
            p.elements.append(("ports", key, f"{name}-ports"))
    for suffix, rules in (("masq", masq_rules), ("hairpin", hairpin), ("ports", ports)):
        if rules:
            p.chains[f"{name}-{suffix}"] = rules
    return p


def apply(p: Plan, lock: str = "") -> None:
    """The shared part, then this attachment's chains and elements: one atomic batch."""
    lines = list(BASE)
    for chain, rules in p.chains.items():
        lines += [f"add chain inet {TABLE} {chain}", f"flush chain inet {TABLE} {chain}"]
        lines += [f"add rule inet {TABLE} {chain} {r}" for r in rules]
    lines += [f"add element inet {TABLE} {m} {{ {k} : jump {c} }}" for m, k, c in p.elements]
    code, out = run("\n".join(lines) + "\n", "-f", "-", lock=lock)
    if code != 0:
        hint = ""
        if "File exists" in out or "Device or resource busy" in out:
            hint = (" (a host port of runtimeConfig.portMappings is mapped to another "
                    "container already, or an address is still held by an attachment that "
                    "was never deleted)")
        raise CNIError(GENERIC, f"nftables: adding the rules of {p.name} failed{hint}",
                       out.strip())


def release(name: str, rec: dict | None, lock: str = "") -> None:
    """Remove an attachment's elements and chains; what is gone already is fine, and an
    element now held by another attachment under the same key stays."""
    chains = [f"{name}-{s}" for s in ("masq", "hairpin", "ports")]
    if rec and rec.get("elements") is not None:
        lines = []
        for c in rec.get("chains") or []:
            lines.append(f"add chain inet {TABLE} {c}")
        for m, k, c in rec["elements"]:
            # ours or nobody's: the add fails (the batch with it) when the key is another's
            lines += [f"add element inet {TABLE} {m} {{ {k} : jump {c} }}",
                      f"delete element inet {TABLE} {m} {{ {k} }}"]
        for c in rec.get("chains") or []:
            lines += [f"flush chain inet {TABLE} {c}", f"delete chain inet {TABLE} {c}"]
        if not lines:
            return
        code, _ = run("\n".join(lines) + "\n", "-f", "-", lock=lock)
        if code == 0:
            return
    _release_by_listing(chains, lock)


def _release_by_listing(chains: list, lock: str) -> None:
    """The slow way: list the table, delete the elements that jump to our chains."""
    import json

    code, out = run("", "-j", "list", "table", "inet", TABLE, lock=lock)
    if code != 0:
        return  # no table: nothing of ours either
    try:
        items = json.loads(out).get("nftables", [])
    except ValueError:
        raise CNIError(GENERIC, "nftables: cannot read the table's listing", out[:200]) from None
    present = {i["chain"]["name"] for i in items if "chain" in i}
    lines = []
    for i in items:
        mp = i.get("map")
        if not mp or mp.get("table") != TABLE:
            continue
        for key, verdict in mp.get("elem") or []:
            target = (verdict.get("jump") or {}).get("target") if isinstance(verdict, dict) else None
            if target in chains:
                lines.append(f"delete element inet {TABLE} {mp['name']} {{ {_key(key)} }}")
    for c in chains:
        if c in present:
            lines += [f"flush chain inet {TABLE} {c}", f"delete chain inet {TABLE} {c}"]
    if lines:
        code, out = run("\n".join(lines) + "\n", "-f", "-", lock=lock)
        if code != 0:
            raise CNIError(GENERIC, "nftables: removing the attachment's rules failed",
                           out.strip())


def _key(key) -> str:
    if isinstance(key, dict) and "concat" in key:
        return " . ".join(str(k) for k in key["concat"])
    return str(key)


def listing() -> str | None:
    """The table as `nft list` prints it; None when there is none."""
    code, out = run("", "list", "table", "inet", TABLE)
    return out if code == 0 else None


def expected_fragments(p: Plan) -> list:
    """Pieces of `nft list` output CHECK looks for: every rule and every element."""
    out = [r for rules in p.chains.values() for r in rules]
    return out + [f"{k} : jump {c}" for _, k, c in p.elements]


def remove_if_unused(lock: str = "") -> bool:
    """Delete the shared table when no attachment has a chain in it (`runner network rm`)."""
    code, out = run("", "list", "chains", "inet", lock=lock)
    if code != 0 or f"table inet {TABLE}" not in out:
        return False
    if PREFIX in out:
        return False
    run(f"delete table inet {TABLE}\n", "-f", "-", lock=lock)
    return True
