"""What an ADD made, kept until its DEL: `<stateDir>/attachments/<network>/<id>:<ifname>.json`
(host veth, bridge, addresses, nftables table, netns path, the result). DEL needs it when the
runtime sends no CNI_NETNS (containerd does): the host end of the veth and the rules are
found from here. Written whole (temporary file, then rename)."""
from __future__ import annotations

import os

from .. import jsonio


def path(state_dir: str, network: str, cid: str, ifname: str) -> str:
    return os.path.join(state_dir, "attachments", network, f"{cid}:{ifname}.json")


def save(state_dir: str, network: str, cid: str, ifname: str, record: dict) -> None:
    p = path(state_dir, network, cid, ifname)
    os.makedirs(os.path.dirname(p), 0o700, exist_ok=True)
    tmp = f"{p}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(jsonio.dumps(record))
    os.rename(tmp, p)


def load(state_dir: str, network: str, cid: str, ifname: str) -> dict | None:
    try:
        with open(path(state_dir, network, cid, ifname)) as f:
            return jsonio.loads(f.read())
    except (FileNotFoundError, ValueError):
        return None


def remove(state_dir: str, network: str, cid: str, ifname: str) -> None:
    p = path(state_dir, network, cid, ifname)
    try:
        os.unlink(p)
    except FileNotFoundError:
        return
    try:
        os.rmdir(os.path.dirname(p))  # the network's directory, when it was the last
    except OSError:
        pass


def list_all(state_dir: str, network: str) -> list:
    """(container id, ifname, record) of every attachment to `network`."""
    d = os.path.join(state_dir, "attachments", network)
    out = []
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return out
    for n in names:
        if n.endswith(".json") and ":" in n:
            cid, _, ifname = n[:-5].partition(":")
            rec = load(state_dir, network, cid, ifname)
            if rec is not None:
                out.append((cid, ifname, rec))
    return out
