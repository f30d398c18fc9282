"""The OCI features document (features.md), built from the tables the code actually uses,
so that it can only claim what is implemented. spec/features.json is a snapshot of it
(kept equal by a unit test)."""
from __future__ import annotations

from . import hooks, namespaces, rootfs
from .spec import NAMESPACES, OCI_VERSION


def features(rootless: bool | None = None) -> dict:
    """What this runtime supports; `rootless` (default: when not run as root) describes
    what an unprivileged user gets, as `runner features` run by that user says."""
    from .security import capabilities, confine, seccomp

    if rootless is None:
        from .userns import rootless as is_rootless

        rootless = is_rootless()
    opts = set(rootfs.FLAG_OPTIONS) | set(rootfs.PROPAGATION) | set(rootfs.RECURSIVE_OPTIONS) \
        | rootfs.COPYUP_OPTIONS
    if not rootless:  # id-mapped mounts need CAP_SYS_ADMIN over the source's filesystem
        opts |= rootfs.IDMAP_OPTIONS
    doc = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(hooks.STAGES),
        "mountOptions": [],
        "linux": {
            "namespaces": [n for n in NAMESPACES if n in namespaces.FLAGS],
            "capabilities": sorted("CAP_" + n.upper() for n in capabilities.known_names()),
            # libcontainer/cgroups: cgroupfs on v1, v2 and hybrid hosts; --systemd-cgroup
            # (cgroups/systemd.py), also a user's systemd rootless on v2
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": True,
                       "rdma": True},
            "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS),
                        "operators": sorted(seccomp.OPERATORS), "archs": sorted(seccomp.ARCHS),
                        "knownFlags": list(seccomp.FLAGS),
                        "supportedFlags": seccomp.supported_flags()},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "netDevices": {"enabled": not rootless},  # netdevices.py (root only)
            "memoryPolicy": {"modes": list(confine.MPOL_MODES), "flags": list(confine.MPOL_FLAGS)},
            # bind mounts (rootfs.py), root only
            "mountExtensions": {"idmap": {"enabled": not rootless}},
        },
        "annotations": {"org.opencontainers.runc.version": "none",
                        "io.github.runner.version": "0.1.0",
                        # the CNI plugin beside the runtime (libcontainer/network)
                        "io.github.runner.cni": _cni()},
    }
    doc["mountOptions"] = sorted(opts)
    if rootless:
        doc["annotations"].update(_rootless_annotations())
    return doc


def _rootless_annotations() -> dict:
    """The rootless facts that the features schema has no field for (README: Rootless)."""
    from .subids import helper

    maps = ("newuidmap/newgidmap: the ranges in /etc/subuid and /etc/subgid"
            if helper("newuidmap") and helper("newgidmap")
            else "the user's own uid and gid only (install uidmap for more)")
    return {
        "io.github.runner.rootless": "true",
        "io.github.runner.rootless.idMappings": maps,
        "io.github.runner.rootless.cgroup": "only a cgroup subtree delegated to the user; "
                                            "without one no cgroup, and linux.resources limits "
                                            "are refused",
        "io.github.runner.rootless.devices": "bind-mounted from the host; linux.resources."
                                             "devices not enforced",
        "io.github.runner.rootless.sysfs": "bound from the host unless the container has a "
                                           "network namespace of its own",
    }


def _cni() -> str:
    from .network import cni

    return (f"runner-cni: CNI {','.join(cni.SUPPORTED_VERSIONS)} "
            f"({' '.join(cni.COMMANDS)}); bridge, veth, host-local IPAM (IPv4, IPv6), "
            "isGateway, ipMasq, hairpinMode, promiscMode, mtu, portMappings (tcp, udp, sctp; "
            "nftables); hooks: runner-cni hook add|del NETWORK")
