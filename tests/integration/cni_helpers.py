"""Helpers of the CNI tests: throw-away network namespaces (a "host" for the bridge and
"containers"), plugin calls inside them, servers and clients for reachability, and the
check that nothing is left. Every namespace is held by a `sleep` made here and dies with
it, taking the bridge, veths and nftables tables in it along."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import netnskit
from conftest import REPO, ROOTFS

OURS = os.path.join(REPO, ".venv", "bin", "runner-cni")
REF_DIR = "/usr/lib/cni"
BUSYBOX = os.path.join(ROOTFS, "bin", "busybox")
T = 30


def ours_command() -> list:
    if os.access(OURS, os.X_OK):
        return [OURS]
    # a bare checkout: the module as the other tests run the runner
    return ["env", f"PYTHONPATH={REPO}", sys.executable, "-c",
            "import sys; from libcontainer.network.main import main; sys.exit(main())"]


class Netns(netnskit.Netns):
    """A namespace of its own (netnskit), with what the CNI tests read of it."""

    def links(self) -> dict:
        """name → `ip -j -d link` object."""
        out = json.loads(self.sh("ip", "-j", "-d", "link").stdout or "[]")
        return {link["ifname"]: link for link in out}

    def addrs(self, dev: str) -> list:
        out = json.loads(self.sh("ip", "-j", "addr", "show", "dev", dev).stdout or "[]")
        return sorted(f"{a['local']}/{a['prefixlen']}" for i in out for a in i["addr_info"]
                      if a.get("scope") == "global")

    def routes(self) -> list:
        out = []
        for fam in ("-4", "-6"):
            for r in json.loads(self.sh("ip", "-j", fam, "route").stdout or "[]"):
                if r["dst"].startswith("fe80"):
                    continue
                out.append((r["dst"], r.get("gateway"), r.get("dev")))
        return sorted(out)

    def nft_rules(self) -> list:
        """Lines of the ruleset that belong to an attachment (its chains, its elements)."""
        r = self.sh("nft", "list", "ruleset", check=False)
        return [line.strip() for line in r.stdout.splitlines() if "rcni-" in line]

    def ping(self, ip: str, tries: int = 3) -> bool:
        """A few tries: an IPv6 address of the reference's bridge is tentative (DAD) for
        its first second or two."""
        six = ["-6"] if ":" in ip else []
        for _ in range(tries):
            if self.sh(BUSYBOX, "ping", *six, "-c", "1", "-W", "1", ip, check=False).returncode == 0:
                return True
        return False



def call(exe: list, command: str, conf: dict, host: Netns, cid: str = "c1", netns: str = "",
         ifname: str = "eth0", env: dict | None = None) -> tuple:
    """One plugin call in the host namespace → (exit status, parsed stdout or None)."""
    e = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
         "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname,
         "CNI_PATH": REF_DIR}
    if netns:
        e["CNI_NETNS"] = netns
    e.update(env or {})
    r = subprocess.run(["nsenter", f"--net={host.path}", *exe], input=json.dumps(conf),
                       capture_output=True, text=True, timeout=T, env=e)
    try:
        out = json.loads(r.stdout) if r.stdout.strip() else None
    except ValueError:
        raise AssertionError(f"not JSON on stdout: {r.stdout!r} {r.stderr!r}") from None
    return r.returncode, out


def ok(exe: list, command: str, conf: dict, host: Netns, **kw):
    rc, out = call(exe, command, conf, host, **kw)
    assert rc == 0, f"{command} failed: {out}"
    return out


# a tiny server in a namespace: answers one line with what it saw of the client
SERVER = r"""
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(fam, kind)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
if proto == "tcp":
    s.listen(8)
print("ready", flush=True)
s.settimeout(20)
while True:
    try:
        if proto == "tcp":
            c, peer = s.accept()
            c.recv(100)
            c.sendall(f"tcp {port} from {peer[0]}\n".encode())
            c.close()
        else:
            data, peer = s.recvfrom(100)
            s.sendto(f"udp {port} from {peer[0]}\n".encode(), peer)
    except socket.timeout:
        break
"""

CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]))
if proto == "tcp":
    s.connect((host, port)); s.sendall(b"hi\n"); print(s.recv(100).decode().strip())
else:
    s.sendto(b"hi\n", (host, port)); print(s.recvfrom(100)[0].decode().strip())
"""


def serve(ns: Netns, proto: str, port: int) -> subprocess.Popen:
    p = ns.popen(sys.executable, "-c", SERVER, proto, str(port), stdout=subprocess.PIPE,
                 text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def ask(ns: Netns, proto: str, host: str, port: int, timeout: float = 3) -> str:
    """The server's answer ("tcp 80 from 10.0.0.1"), or "" when it was not reached."""
    r = ns.sh(sys.executable, "-c", CLIENT, proto, host, str(port), str(timeout), check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def allocation_files(state: str) -> list:
    """Files of the pool and the attachment records that stand for an allocation."""
    out = []
    for base, _, files in os.walk(state):
        for f in files:
            if f in ("lock", "nft.lock") or f.startswith("last_reserved_ip."):
                continue
            out.append(os.path.join(base, f))
    return out


def veths(ns: Netns) -> list:
    return [n for n, l in ns.links().items()
            if l.get("linkinfo", {}).get("info_kind") == "veth"]
