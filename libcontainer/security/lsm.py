"""AppArmor and SELinux: this runtime applies neither. A config that asks for a profile or
a label is refused, saying whether the host has the LSM at all — never silently run
unconfined. The one exception is linux.mountLabel on a host without SELinux, where there
is nothing to label: a warning."""
from __future__ import annotations

import os

from ..errors import ConfigError

APPARMOR = "/sys/kernel/security/apparmor"
SELINUX = "/sys/fs/selinux"


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y" and os.path.isdir(APPARMOR)
    except OSError:
        return False


def selinux_enabled() -> bool:
    return os.path.exists(os.path.join(SELINUX, "enforce"))


def check(proc) -> None:
    if proc.apparmor_profile:
        _refuse("process.apparmorProfile", "AppArmor", proc.apparmor_profile,
                apparmor_enabled(), APPARMOR)
    if proc.selinux_label:
        _refuse("process.selinuxLabel", "SELinux", proc.selinux_label, selinux_enabled(), SELINUX)


def check_mount_label(label: str, warn=None) -> None:
    """linux.mountLabel is an SELinux context for the container's mounts. On a host with
    SELinux it cannot be applied: refused. Without SELinux no mount carries a label and
    none would confine anything: a warning, and the container runs (as crun runs it; the
    OCI suite's linux_mount_label expects that)."""
    if selinux_enabled():
        _refuse("linux.mountLabel", "SELinux", label, True, SELINUX)
    (warn or _warn)(f"linux.mountLabel: {label!r} is not applied: SELinux is not enabled on "
                    f"this host ({SELINUX} does not exist), no mount is labelled")


def _warn(msg: str) -> None:
    import sys

    sys.stderr.write(f"warning: {msg}\n")


def refuse_apparmor(field: str, profile: str) -> None:
    _refuse(field, "AppArmor", profile, apparmor_enabled(), APPARMOR)


def refuse_selinux(field: str, label: str) -> None:
    _refuse(field, "SELinux", label, selinux_enabled(), SELINUX)


def _refuse(field: str, name: str, value: str, enabled: bool, where: str) -> None:
    what = "flag" if field.startswith("--") else "field"
    if not enabled:
        raise ConfigError(field, f"cannot apply {value!r}: {name} is not enabled on this host "
                                 f"({where} does not exist); remove the {what} to run without it")
    raise ConfigError(field, f"cannot apply {value!r}: this runtime does not support {name} "
                             f"labels yet; remove the {what} to run without it")
