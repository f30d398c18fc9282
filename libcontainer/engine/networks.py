"""Networks of the daemon, through libcontainer.network: each is a runner-cni configuration
in DATA/network/conf (state in DATA/network/state). A container joins its network from its
own config.json hooks (createRuntime: runner-cni hook add — before its process runs), so
networking is up before the program starts, as with dockerd. Containers on one network
find each other by name through their /etc/hosts, rewritten as members come and go."""
from __future__ import annotations

import os
import sys
import threading

from .errors import BadRequest, Conflict, NotFound
from ..state import crash_point
from .records import now, read_json, write_json

BRIDGE_SUBNET = "172.17.0.0/16"
BUILTIN = ("bridge", "host", "none")


def _cni_exe() -> str:
    for p in (os.path.join(os.path.dirname(sys.executable), "runner-cni"),
              os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
                  os.path.dirname(os.path.abspath(__file__))))), "bin", "runner-cni")):
        if os.access(p, os.X_OK):
            return p
    return "runner-cni"


class Networks:
    def __init__(self, root: str, rootless: bool):
        self.root = root
        self.conf_dir = os.path.join(root, "conf")
        self.state_dir = os.path.join(root, "state")
        self.rootless = rootless
        self.lock = threading.RLock()
        self.members: dict = {}  # network → {cid: (name, ip, hosts file, aliases)}
        for d in (self.conf_dir, self.state_dir):
            os.makedirs(d, 0o700, exist_ok=True)
        self.meta_path = os.path.join(root, "networks.json")
        self.meta = read_json(self.meta_path) or {}
        if not rootless:
            self._reconcile()

    def _reconcile(self) -> None:
        """A daemon killed between a network's config and its record (create writes the
        config first, remove drops it first): a config without a record goes, a record
        without a config too."""
        from ..network import netconf

        confs = set(self.names())
        for name in confs - set(self.meta):
            try:
                netconf.remove(name, self.conf_dir, force=True)
            except Exception as e:
                import logging

                logging.getLogger("runner.daemon").warning("network %s: %s", name, e)
        stale = set(self.meta) - confs
        for name in stale:
            del self.meta[name]
        if stale:
            self._save_meta()

    # ---- networks ----------------------------------------------------------------------

    def _save_meta(self) -> None:
        write_json(self.meta_path, self.meta)

    def names(self) -> list:
        from ..network import netconf

        return [c["name"] for c in netconf.list_all(self.conf_dir)]

    def create(self, name: str, subnet: str = "", gateway: str = "", labels=None,
               driver: str = "bridge", internal: bool = False, options=None,
               ipam_options=None) -> dict:
        from ..errors import AlreadyExists, InvalidArgument
        from ..network import netconf

        if driver not in ("bridge", "", None):
            raise BadRequest(f"plugin \"{driver}\" not found (only the bridge driver)")
        if self.rootless:
            raise BadRequest("networks need root (a rootless daemon gives containers no network)")
        with self.lock:
            if name in BUILTIN and name != "bridge" or (name == "bridge" and name in self.meta):
                raise Conflict(f"network with name {name} already exists")
            try:
                netconf.create(name, subnet=subnet, gateway=gateway, state_dir=self.state_dir,
                               ip_masq=not internal,
                               bridge=("runner0" if name == "bridge" else ""), d=self.conf_dir)
            except AlreadyExists:
                raise Conflict(f"network with name {name} already exists") from None
            except InvalidArgument as e:
                raise BadRequest(str(e)) from None
            crash_point("network config written")
            import secrets

            self.meta[name] = {"Id": secrets.token_hex(32), "Created": now(),
                               "Labels": dict(labels or {}), "Internal": internal,
                               "Options": dict(options or {}),
                               # shown back as given (dockerd: null when the request had none)
                               "IPAMOptions": dict(ipam_options) if isinstance(ipam_options, dict) else None}
            self._save_meta()
            return self.meta[name]

    def get(self, ref: str) -> str:
        """A network's name, by name, id or id prefix."""
        if ref in ("host", "none"):
            return ref
        for b in ("host", "none"):
            if len(ref) >= 12 and _builtin_id(b).startswith(ref):
                return b
        if ref == "bridge" or ref == "default":
            self._ensure_bridge()
            return "bridge"
        with self.lock:
            if ref in self.meta:
                return ref
            hits = [n for n, m in self.meta.items() if m["Id"].startswith(ref)] if ref else []
            if len(hits) == 1:
                return hits[0]
        raise NotFound(f"network {ref} not found")

    def _ensure_bridge(self) -> None:
        if self.rootless:
            return
        with self.lock:
            if "bridge" not in self.meta:
                self.create("bridge", subnet=BRIDGE_SUBNET)

    def inspect(self, name: str) -> dict:
        from ..network import netconf

        if name in ("host", "none"):
            return {"Name": name, "Id": _builtin_id(name), "Created": "0001-01-01T00:00:00Z",
                    "Scope": "local", "Driver": name if name == "host" else "null",
                    "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": []},
                    "Internal": False, "Attachable": False, "Ingress": False,
                    "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
                    "Options": {}, "Labels": {}}
        meta = self.meta[name]
        conf = netconf.load(name, self.conf_dir)
        ranges = (conf.get("ipam") or {}).get("ranges") or []
        cfg = [{"Subnet": r[0]["subnet"], **({"Gateway": r[0]["gateway"]} if r[0].get("gateway") else {})}
               for r in ranges]
        containers = {cid: {"Name": m[0], "EndpointID": cid[:32], "MacAddress": "",
                            "IPv4Address": m[1], "IPv6Address": ""}
                      for cid, m in self.members.get(name, {}).items()}
        return {"Name": name, "Id": meta["Id"], "Created": meta["Created"], "Scope": "local",
                "Driver": "bridge", "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": meta.get("IPAMOptions"), "Config": cfg},
                "Internal": meta.get("Internal", False), "Attachable": False, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
                "Options": meta.get("Options") or {},
                "Labels": meta.get("Labels") or {}}

    def list(self) -> list:
        out = [self.inspect(n) for n in ("host", "none")]
        if not self.rootless:
            self._ensure_bridge()
        return out + [self.inspect(n) for n in list(self.meta)]

    def remove(self, ref: str) -> None:
        from ..network import netconf

        name = self.get(ref)
        if name in BUILTIN:
            raise Forbidden_(f"{name} is a pre-defined network and cannot be removed")
        with self.lock:
            if self.members.get(name):
                raise Conflict(f"error while removing network: network {name} id "
                               f"{self.meta[name]['Id']} has active endpoints")
            netconf.remove(name, self.conf_dir, force=True)
            crash_point("network config removed")
            del self.meta[name]
            self._save_meta()

    # ---- containers --------------------------------------------------------------------

    def check_mode(self, mode: str) -> None:
        if mode in ("default", "bridge", "host", "none") or mode.startswith("container:"):
            return
        self.get(mode)

    def _net_of(self, mode: str) -> str:
        if mode in ("default", "bridge"):
            return "" if self.rootless else "bridge"
        if mode in ("host", "none"):
            return ""
        return self.get(mode)

    def configure(self, spec: dict, cid: str, name: str, mode: str, hc: dict, body: dict) -> None:
        ns = spec["linux"]["namespaces"]
        if mode == "host":
            spec["linux"]["namespaces"] = [n for n in ns if n["type"] != "network"]
            for m in spec["mounts"]:
                if m["destination"] == "/etc/hostname":
                    pass
            return
        net = self._net_of(mode)
        if not net:
            return
        self.get(net)
        ports = []
        for cport, binds in (hc.get("PortBindings") or {}).items():
            num, _, proto = cport.partition("/")
            for b in binds or [{}]:
                hp = (b or {}).get("HostPort") or num
                hip = (b or {}).get("HostIp") or ""
                ports.append(f"{hip + ':' if hip else ''}{hp}:{num}/{proto or 'tcp'}")
        from ..network.hook import entries

        hooks = entries(net, _cni_exe(), config_dir=self.conf_dir, ports=ports)
        for stage, items in hooks.items():
            for h in items:
                h["args"][3:3] = []
                h["args"] += ["--state-dir", self.state_dir]
            spec.setdefault("hooks", {}).setdefault(stage, []).extend(items)

    def settings(self, cid: str, mode: str, body: dict) -> dict:
        net = self._net_of(mode) if mode not in ("host", "none") else mode
        nets = {}
        if net:
            nets[net] = {"IPAMConfig": None, "Links": None, "Aliases": None,
                         "NetworkID": self.meta.get(net, {}).get("Id", net), "EndpointID": "",
                         "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                         "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "",
                         "DriverOpts": None}
        aliases = (((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
                   .get(mode) or {}).get("Aliases")
        if aliases and net in nets:
            nets[net]["Aliases"] = list(aliases)
        return {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
                "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
                "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
                "Networks": nets}

    def before_start(self, rec: dict) -> None:
        """The newcomer's /etc/hosts names the members already there before its program
        runs (its own address is added once the hook gave it one)."""
        for net in rec["NetworkSettings"].get("Networks") or {}:
            if net in ("host", "none", "bridge"):
                continue
            with self.lock:
                members = dict(self.members.get(net, {}))
            lines = [f"{a}\t{' '.join(ns)}" for c, (_, a, _h, ns, _b) in members.items()
                     if c != rec["Id"]]
            try:
                with open(rec["HostsPath"], "r+") as f:
                    base = f.read().split("# runner-daemon network\n")[0]
                    f.seek(0)
                    f.write(base + "# runner-daemon network\n" + "\n".join(lines) + "\n")
                    f.truncate()
            except OSError:
                pass

    def after_start(self, rec: dict) -> None:
        """Read what the hook attached (the CNI result) into NetworkSettings; tell the
        network's members about the newcomer."""
        from ..network import records

        ns = rec["NetworkSettings"]
        for net, ep in (ns.get("Networks") or {}).items():
            if net in ("host", "none"):
                continue
            r = records.load(self.state_dir, net, rec["Id"], self._ifname(rec, net)) or {}
            res = r.get("result") or {}
            ips = res.get("ips") or []
            if not ips:
                continue
            addr, _, plen = ips[0]["address"].partition("/")
            ep.update(IPAddress=addr, IPPrefixLen=int(plen or 0), Gateway=ips[0].get("gateway", ""),
                      EndpointID=rec["Id"][:32],
                      MacAddress=next((i.get("mac", "") for i in res.get("interfaces") or []
                                       if i.get("sandbox")), ""))
            if net == "bridge":
                ns.update(IPAddress=addr, IPPrefixLen=int(plen or 0), Gateway=ep["Gateway"],
                          MacAddress=ep["MacAddress"], EndpointID=ep["EndpointID"])
            names = [rec["Name"].lstrip("/"), rec["Id"][:12]] + list(ep.get("Aliases") or [])
            with self.lock:
                self.members.setdefault(net, {})[rec["Id"]] = (rec["Name"].lstrip("/"), addr,
                                                               rec["HostsPath"], names,
                                                               net != "bridge")
            self._rewrite_hosts(net)
        ports = {}
        for cport, binds in (rec["HostConfig"].get("PortBindings") or {}).items():
            ports[cport] = [{"HostIp": (b or {}).get("HostIp") or "0.0.0.0",
                             "HostPort": str((b or {}).get("HostPort") or cport.split("/")[0])}
                            for b in binds or [{}]]
        for cport in rec["Config"].get("ExposedPorts") or {}:
            ports.setdefault(cport, None)
        ns["Ports"] = ports

    def after_stop(self, rec: dict) -> None:
        from .. import network

        for net in rec.pop("_late_nets", None) or ():
            # connected while it ran: the runtime's poststop hooks do not know it (DEL is
            # fine after the namespace is gone, and twice)
            try:
                network.detach(rec["Id"], net, ifname=self._ifname(rec, net), config_dir=self.conf_dir)
            except Exception as e:
                import logging

                logging.getLogger("runner.daemon").warning("detach %s from %s: %s", rec["Id"][:12], net, e)
        touched = []
        with self.lock:
            for net, members in self.members.items():
                if members.pop(rec["Id"], None):
                    touched.append(net)
        for ep in (rec["NetworkSettings"].get("Networks") or {}).values():
            ep.update(IPAddress="", IPPrefixLen=0, Gateway="", EndpointID="", MacAddress="")
        rec["NetworkSettings"].update(IPAddress="", IPPrefixLen=0, Gateway="", Ports={})
        for net in touched:
            self._rewrite_hosts(net)

    def forget(self, rec: dict) -> None:
        pass

    # ---- connect / disconnect ------------------------------------------------------------

    def _ifname(self, rec: dict, net: str) -> str:
        nets = [n for n in (rec["NetworkSettings"].get("Networks") or {}) if n not in ("host", "none")]
        return f"eth{nets.index(net)}" if net in nets else f"eth{len(nets)}"

    def _rewrite_hooks(self, bundle: str, rec: dict) -> None:
        """config.json's hooks: one add/del pair per network, eth0, eth1… in order."""
        import json

        from ..network.hook import entries

        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        hooks = spec.setdefault("hooks", {})
        for stage in ("createRuntime", "poststop"):
            hooks[stage] = [h for h in hooks.get(stage) or []
                            if not (len(h.get("args", [])) > 1 and h["args"][1] == "hook")]
        ports = []
        for cport, binds in (rec["HostConfig"].get("PortBindings") or {}).items():
            num, _, proto = cport.partition("/")
            for b in binds or [{}]:
                hip = (b or {}).get("HostIp") or ""
                ports.append(f"{hip + ':' if hip else ''}{(b or {}).get('HostPort') or num}:{num}/{proto or 'tcp'}")
        for i, net in enumerate(n for n in rec["NetworkSettings"]["Networks"] if n not in ("host", "none")):
            e = entries(net, _cni_exe(), config_dir=self.conf_dir, ports=ports if i == 0 else (),
                        ifname=f"eth{i}")
            for stage, items in e.items():
                for h in items:
                    h["args"] += ["--state-dir", self.state_dir]
                hooks.setdefault(stage, []).extend(items)
        spec["hooks"] = {k: v for k, v in hooks.items() if v}
        with open(path + ".tmp", "w") as f:
            json.dump(spec, f, indent=1)
        os.rename(path + ".tmp", path)

    def connect(self, rec: dict, bundle: str, ref: str, endpoint: dict) -> None:
        net = self.get(ref)
        mode = rec["HostConfig"].get("NetworkMode", "default")
        if net in ("host", "none") or mode in ("host", "none") or mode.startswith("container:"):
            raise BadRequest("container cannot be disconnected from host network or connected "
                             "to host network")
        nets = rec["NetworkSettings"].setdefault("Networks", {})
        if net in nets:
            raise Forbidden_(f"endpoint with name {rec['Name'].lstrip('/')} already exists in network {net}")
        nets[net] = {"IPAMConfig": None, "Links": None,
                     "Aliases": list((endpoint or {}).get("Aliases") or []) or None,
                     "NetworkID": self.meta.get(net, {}).get("Id", net), "EndpointID": "",
                     "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                     "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "",
                     "DriverOpts": None}
        self._rewrite_hooks(bundle, rec)
        if rec["State"]["Status"] in ("running", "paused"):
            from .. import network

            network.attach(f"/proc/{rec['State']['Pid']}/ns/net", rec["Id"], net,
                           ifname=self._ifname(rec, net), config_dir=self.conf_dir)
            # the runtime's poststop hooks are those it started with: this one is ours to DEL
            rec.setdefault("_late_nets", []).append(net)
            self.after_start(rec)

    def disconnect(self, rec: dict, bundle: str, ref: str) -> None:
        net = self.get(ref)
        nets = rec["NetworkSettings"].get("Networks") or {}
        if net not in nets:
            raise BadRequest(f"container {rec['Id']} is not connected to network {net}")
        if rec["State"]["Status"] in ("running", "paused"):
            from .. import network

            network.detach(rec["Id"], net, ifname=self._ifname(rec, net),
                           netns=f"/proc/{rec['State']['Pid']}/ns/net", config_dir=self.conf_dir)
            if net in (rec.get("_late_nets") or ()):
                rec["_late_nets"].remove(net)
            with self.lock:
                self.members.get(net, {}).pop(rec["Id"], None)
            self._rewrite_hosts(net)
        del nets[net]
        self._rewrite_hooks(bundle, rec)

    def _rewrite_hosts(self, net: str) -> None:
        """Every member's /etc/hosts names every other member (user networks: dockerd's
        embedded DNS answers names only there; the default bridge does not)."""
        with self.lock:
            members = dict(self.members.get(net, {}))
        for cid, (name, addr, hosts, _names, by_name) in members.items():
            if not by_name:
                continue
            try:
                with open(hosts) as f:
                    base = f.read().split("# runner-daemon network\n")[0]
            except OSError:
                continue
            lines = [f"{addr}\t{' '.join(_names)}"]
            lines += [f"{a}\t{' '.join(ns)}" for c, (_, a, _h, ns, _b) in members.items() if c != cid]
            try:
                with open(hosts, "r+") as f:  # in place: the file is bind mounted
                    f.write(base + "# runner-daemon network\n" + "\n".join(lines) + "\n")
                    f.truncate()
            except OSError:
                continue


def _builtin_id(name: str) -> str:
    import hashlib

    return hashlib.sha256(b"runner-daemon network " + name.encode()).hexdigest()


class Forbidden_(BadRequest):
    status = 403
