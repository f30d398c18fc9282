"""A Docker container's Config + HostConfig → the OCI config.json of its bundle (what
dockerd's daemon/oci_linux.go does): docker's default capabilities, seccomp profile and
masks, then binds/mounts/tmpfs, resources, ulimits, sysctls, devices, caps, privileged,
security options, read-only root. Errors name the field (→ 400)."""
from __future__ import annotations

import os
import shlex

from .errors import BadRequest

# dockerd's default set (oci/caps/defaults.go)
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
ALL_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
            "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
            "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
            "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]


def _bounding() -> set:
    """Capabilities this host can give at all (CAP_SYS_RESOURCE may be missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return {c for i, c in enumerate(ALL_CAPS) if mask >> _CAP_NUM.get(c, 99) & 1}
    except OSError:
        pass
    return set(ALL_CAPS)


_CAP_NUM = {c: i for i, c in enumerate(
    ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
     "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
     "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
     "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
     "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
     "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
     "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
     "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
     "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"])}

RLIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as"}


def _cap(name: str, field: str) -> str:
    n = name.upper()
    if n == "ALL":
        return n
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    if n not in _CAP_NUM:
        raise BadRequest(f"{field}: unknown capability: {name!r}")
    return n


def capabilities(hc: dict) -> list:
    if hc.get("Privileged"):
        caps = list(ALL_CAPS)
    else:
        caps = list(DOCKER_CAPS)
        add = [_cap(c, "HostConfig.CapAdd") for c in hc.get("CapAdd") or []]
        drop = [_cap(c, "HostConfig.CapDrop") for c in hc.get("CapDrop") or []]
        if "ALL" in drop:
            caps = []
        caps = [c for c in caps if c not in drop]
        caps += ALL_CAPS if "ALL" in add else [c for c in add if c not in caps]
    have = _bounding()
    return [c for c in dict.fromkeys(caps) if c in have]


def parse_bind(spec: str) -> dict:
    """SRC:DST[:OPTS] (HostConfig.Binds) → a mount dict; SRC without a slash is a volume name."""
    parts = spec.split(":")
    if len(parts) == 1:
        return {"Type": "volume", "Source": "", "Target": parts[0], "ReadOnly": False}
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise BadRequest(f"HostConfig.Binds: invalid volume specification: {spec!r}")
    opts = parts[2].split(",") if len(parts) == 3 else []
    kind = "bind" if parts[0].startswith("/") else "volume"
    return {"Type": kind, "Source": parts[0], "Target": parts[1], "ReadOnly": "ro" in opts,
            "Propagation": next((o for o in opts if o.endswith("private") or o.endswith("shared")
                                 or o.endswith("slave")), "")}


def mounts_of(config: dict, hc: dict) -> list:
    """Every mount the container asks for, as HostConfig.Mounts-style dicts, checked."""
    out = []
    for b in hc.get("Binds") or []:
        if not isinstance(b, str):
            raise BadRequest("HostConfig.Binds: want strings")
        out.append(parse_bind(b))
    for m in hc.get("Mounts") or []:
        kind = m.get("Type") or "volume"
        if kind not in ("bind", "volume", "tmpfs"):
            raise BadRequest(f"HostConfig.Mounts: mount type {kind!r} is not supported")
        if not m.get("Target"):
            raise BadRequest("HostConfig.Mounts: Target must not be empty")
        if kind == "bind" and not (m.get("Source") or "").startswith("/"):
            raise BadRequest(f"HostConfig.Mounts: invalid mount config for type \"bind\": "
                             f"invalid mount path: {m.get('Source')!r} mount path must be absolute")
        item = {"Type": kind, "Source": m.get("Source") or "", "Target": m["Target"],
                "ReadOnly": bool(m.get("ReadOnly"))}
        if kind == "tmpfs":
            t = m.get("TmpfsOptions") or {}
            opts = []
            if t.get("SizeBytes"):
                opts.append(f"size={int(t['SizeBytes'])}")
            if t.get("Mode"):
                opts.append(f"mode={int(t['Mode']):o}")
            item["Options"] = opts
        out.append(item)
    for target, opts in (hc.get("Tmpfs") or {}).items():
        out.append({"Type": "tmpfs", "Source": "", "Target": target, "ReadOnly": False,
                    "Options": [o for o in (opts or "").split(",") if o]})
    for target in (config.get("Volumes") or {}):
        if not any(m["Target"] == target for m in out):
            out.append({"Type": "volume", "Source": "", "Target": target, "ReadOnly": False})
    for m in out:
        if not m["Target"].startswith("/"):
            raise BadRequest(f"invalid mount config: mount path {m['Target']!r} must be absolute")
        if m["Type"] == "bind" and not os.path.exists(m["Source"]):
            if hc.get("Binds") and any(b.split(":")[0] == m["Source"] for b in hc["Binds"]):
                os.makedirs(m["Source"], exist_ok=True)  # dockerd makes a missing Binds source
            else:
                raise BadRequest(f"invalid mount config for type \"bind\": bind source path "
                                 f"does not exist: {m['Source']}")
    return out


def _int(hc: dict, key: str) -> int:
    v = hc.get(key) or 0
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRequest(f"HostConfig.{key}: want an integer, got {v!r}")
    return v


def resources(hc: dict) -> dict:
    res: dict = {}
    mem = {}
    limit = _int(hc, "Memory")
    if limit:
        if limit < 6 * 1024 * 1024:
            raise BadRequest("Minimum memory limit allowed is 6MB")
        mem["limit"] = limit
    swap = _int(hc, "MemorySwap")
    if swap:
        if limit and swap != -1 and swap < limit:
            raise BadRequest("Minimum memoryswap limit should be larger than memory limit, "
                             "see usage")
        mem["swap"] = swap
    if _int(hc, "MemoryReservation"):
        mem["reservation"] = hc["MemoryReservation"]
    if mem:
        res["memory"] = mem
    cpu: dict = {}
    if _int(hc, "CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    nano = _int(hc, "NanoCpus")
    if nano:
        if hc.get("CpuQuota"):
            raise BadRequest("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        cpu["period"] = 100000
        cpu["quota"] = nano * 100000 // 10 ** 9
    if _int(hc, "CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
        cpu["period"] = _int(hc, "CpuPeriod") or 100000
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids:
        res["pids"] = {"limit": int(pids) if int(pids) > 0 else -1}
    return res


def security_opts(hc: dict) -> dict:
    out = {"no_new_privileges": False, "seccomp": "default"}
    for opt in hc.get("SecurityOpt") or []:
        key, sep, val = opt.partition("=" if "=" in opt else ":")
        if key == "no-new-privileges":
            out["no_new_privileges"] = val in ("", "true")
        elif key == "seccomp":
            out["seccomp"] = val
        elif key in ("apparmor", "label"):
            pass  # no LSM here: accepted and ignored, as dockerd without AppArmor/SELinux
        else:
            raise BadRequest(f"HostConfig.SecurityOpt: invalid --security-opt: {opt!r}")
    return out


def apply(spec: dict, cid: str, config: dict, hc: dict, mounts: list, extra_mounts: list,
          rootless: bool) -> None:
    """Change the image's default config `spec` in place for the container."""
    import json

    proc = spec["process"]
    proc["terminal"] = bool(config.get("Tty"))
    caps = capabilities(hc)
    proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    sec = security_opts(hc)
    proc["noNewPrivileges"] = sec["no_new_privileges"]
    proc.pop("rlimits", None)
    rl = []
    for u in hc.get("Ulimits") or []:
        name = str(u.get("Name", "")).lower()
        if name not in RLIMITS:
            raise BadRequest(f"HostConfig.Ulimits: invalid ulimit type: {name!r}")
        rl.append({"type": "RLIMIT_" + name.upper(), "soft": int(u.get("Soft", 0)),
                   "hard": int(u.get("Hard", 0))})
    if rl:
        proc["rlimits"] = rl
    if hc.get("GroupAdd"):
        gids = proc["user"].setdefault("additionalGids", [])
        for g in hc["GroupAdd"]:
            if not str(g).isdigit():
                raise BadRequest(f"HostConfig.GroupAdd: {g!r}: only numeric groups are supported")
            gids.append(int(g))
    spec["hostname"] = config.get("Hostname") or cid[:12]
    if config.get("Domainname"):
        spec["domainname"] = config["Domainname"]
    spec["root"]["readonly"] = bool(hc.get("ReadonlyRootfs"))
    ann = spec.setdefault("annotations", {})
    ann.update({str(k): str(v) for k, v in (config.get("Labels") or {}).items()})
    linux = spec["linux"]
    res = resources(hc)
    if not rootless or res:
        # rootless: a cgroup only when limits are asked for (they need a delegated subtree,
        # and the library says so naming the field when there is none)
        linux["cgroupsPath"] = f"/runner-daemon/{cid}"
    if res:
        linux["resources"] = res
    if hc.get("Sysctls"):
        linux["sysctl"] = {str(k): str(v) for k, v in hc["Sysctls"].items()}
    devices = []
    cg_devices = []
    for dev in hc.get("Devices") or []:
        host = dev.get("PathOnHost", "")
        try:
            st = os.stat(host)
        except OSError:
            raise BadRequest(f"HostConfig.Devices: error gathering device information while "
                             f"adding custom device {host!r}: no such file or directory") from None
        import stat as st_mod

        if not (st_mod.S_ISCHR(st.st_mode) or st_mod.S_ISBLK(st.st_mode)):
            raise BadRequest(f"HostConfig.Devices: {host} is not a device")
        kind = "c" if st_mod.S_ISCHR(st.st_mode) else "b"
        devices.append({"path": dev.get("PathInContainer") or host, "type": kind,
                        "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                        "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0})
        cg_devices.append({"allow": True, "type": kind, "major": os.major(st.st_rdev),
                           "minor": os.minor(st.st_rdev),
                           "access": dev.get("CgroupPermissions") or "rwm"})
    if devices:
        linux["devices"] = devices
    if cg_devices and not rootless:
        linux.setdefault("resources", {})["devices"] = [{"allow": False, "access": "rwm"}] + cg_devices
    if hc.get("Privileged"):
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
        for m in spec["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup") and "ro" in m.get("options", []):
                m["options"] = [o for o in m["options"] if o != "ro"]
        if not rootless:
            linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
    elif sec["seccomp"] not in ("unconfined",):
        if sec["seccomp"] in ("default", ""):
            from ..security.seccomp_default import default_profile

            linux["seccomp"] = default_profile(capabilities=caps)
        else:
            try:
                profile = json.loads(sec["seccomp"])
            except ValueError:
                raise BadRequest("HostConfig.SecurityOpt: seccomp: the profile is not JSON") from None
            linux["seccomp"] = _docker_profile(profile)
    # the container's own /etc files and the mounts, after the image's defaults
    for m in extra_mounts + mounts:
        spec["mounts"].append(m)
    if config.get("StopSignal"):
        ann["org.opencontainers.image.stopSignal"] = str(config["StopSignal"])


def _docker_profile(p: dict) -> dict:
    """A Docker seccomp profile (defaultAction, syscalls with names) → linux.seccomp."""
    out = {"defaultAction": p.get("defaultAction", "SCMP_ACT_ERRNO")}
    if "defaultErrnoRet" in p:
        out["defaultErrnoRet"] = p["defaultErrnoRet"]
    arches = p.get("architectures") or [a["architecture"] for a in p.get("archMap") or []]
    if arches:
        out["architectures"] = arches
    rules = []
    for s in p.get("syscalls") or []:
        names = s.get("names") or ([s["name"]] if s.get("name") else [])
        if not names:
            continue
        r = {"names": names, "action": s.get("action", "SCMP_ACT_ALLOW")}
        for k in ("args", "errnoRet"):
            if s.get(k) is not None:
                r[k] = s[k]
        rules.append(r)
    out["syscalls"] = rules
    return out


def command(config: dict, image_config: dict) -> tuple:
    """(entrypoint, cmd) as docker decides: the container's, else the image's; a given
    Entrypoint drops the image's Cmd."""
    ic = image_config.get("config") or {}
    ep = config.get("Entrypoint")
    if isinstance(ep, str):
        ep = shlex.split(ep)
    cmd = config.get("Cmd")
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    if ep is None or ep == []:
        ep_final = [] if ep == [] and config.get("Entrypoint") is not None else list(ic.get("Entrypoint") or [])
        if ep == [] and ep_final == []:
            ep_final = []
    else:
        ep_final = list(ep)
    if cmd:
        cmd_final = list(cmd)
    elif ep:
        cmd_final = []
    else:
        cmd_final = list(ic.get("Cmd") or [])
    if not ep_final and not cmd_final:
        raise BadRequest("No command specified")
    return ep_final, cmd_final
