"""The OCI features document (features.md), built from the tables the code actually uses,
so that it can only claim what is implemented. spec/features.json is a snapshot of it
(kept equal by a unit test)."""
from __future__ import annotations

from . import hooks, namespaces, rootfs
from .spec import NAMESPACES, OCI_VERSION


def features() -> dict:
    from .security import capabilities, confine, seccomp

    opts = sorted(set(rootfs.FLAG_OPTIONS) | set(rootfs.PROPAGATION) | set(rootfs.RECURSIVE_OPTIONS)
                  | rootfs.COPYUP_OPTIONS | rootfs.IDMAP_OPTIONS)
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(hooks.STAGES),
        "mountOptions": opts,
        "linux": {
            "namespaces": [n for n in NAMESPACES if n in namespaces.FLAGS],
            "capabilities": sorted("CAP_" + n.upper() for n in capabilities.known_names()),
            # libcontainer/cgroups: cgroupfs on v1, v2 and hybrid hosts (no systemd driver)
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": True},
            "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS),
                        "operators": sorted(seccomp.OPERATORS), "archs": sorted(seccomp.ARCHS),
                        "knownFlags": list(seccomp.FLAGS),
                        "supportedFlags": seccomp.supported_flags()},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "netDevices": {"enabled": True},  # netdevices.py
            "memoryPolicy": {"modes": list(confine.MPOL_MODES), "flags": list(confine.MPOL_FLAGS)},
            "mountExtensions": {"idmap": {"enabled": True}},  # bind mounts (rootfs.py)
        },
        "annotations": {"org.opencontainers.runc.version": "none",
                        "io.github.runner.version": "0.1.0",
                        # the CNI plugin beside the runtime (libcontainer/network)
                        "io.github.runner.cni": _cni()},
    }


def _cni() -> str:
    from .network import cni

    return (f"runner-cni: CNI {','.join(cni.SUPPORTED_VERSIONS)} "
            f"({' '.join(cni.COMMANDS)}); bridge, veth, host-local IPAM (IPv4, IPv6), "
            "isGateway, ipMasq, hairpinMode, promiscMode, mtu, portMappings (tcp, udp, sctp; "
            "nftables); hooks: runner-cni hook add|del NETWORK")
