"""What a `linux.resources` asks written where: which hierarchy (v1 or v2) handles each
resource group on this host, and the file writes of each, checked against what the
host has mounted."""
from __future__ import annotations

from . import v1, v2
from .host import Host
from ..errors import ConfigError

KEY_GROUPS = {"memory": ("memory",), "cpu": ("cpu", "cpuset"), "pids": ("pids",),
              "blockIO": ("blkio",), "hugepageLimits": ("hugetlb",),
              "network": ("net_cls", "net_prio"), "rdma": ("rdma",)}
GROUP_FIELD = {"memory": "memory", "cpu": "cpu", "cpuset": "cpu", "pids": "pids",
               "blkio": "blockIO", "hugetlb": "hugepageLimits", "net_cls": "network",
               "net_prio": "network", "rdma": "rdma"}


def _field_of_ctrl(ctrl: str) -> str:
    inv = {v: k for k, v in v2.V2_NAME.items()}
    g = inv.get(ctrl)
    return f"linux.resources.{GROUP_FIELD[g]}" if g in GROUP_FIELD else "linux.resources.unified"


def _assign(host: Host, res: dict) -> dict:
    """Which hierarchy handles each resource group the config uses."""
    groups = {}
    for key, gs in KEY_GROUPS.items():
        if not res.get(key):
            continue
        for g in gs:
            if g in host.v1:
                groups[g] = "v1"
            elif host.unified and (v2.V2_NAME.get(g) in host.v2_controllers
                                   or (g not in v2.V2_NAME and host.mode == "v2")):
                groups[g] = "v2"  # (no v2 equivalent on a v2 host: v2.writes says so)
            else:
                groups[g] = ""
    return groups


def _plan_writes(host: Host, res: dict, groups: dict, full: dict | None = None) -> dict:
    """{group: writes}, with "unified:<ctrl>" groups for `unified`; raises for a field the
    host cannot apply."""
    w1 = v1.writes(res)
    out = {}
    for g, writes in w1.items():
        where = groups.get(g)
        if where == "v1":
            out[g] = writes
        elif not where:
            field = writes[0][0]
            where_v2 = f", not in {host.unified}/cgroup.controllers" if host.unified else ""
            if g not in v2.V2_NAME:
                where_v2 = " (and cgroup v2 has no equivalent)"
            raise ConfigError(field, f"cannot be applied: the {g} controller is not mounted "
                                     f"on this host{where_v2}")
    v2_keys = {k for k, gs in KEY_GROUPS.items() if any(groups.get(g) == "v2" for g in gs)}
    if v2_keys:
        sub = {k: res[k] for k in v2_keys}
        for g, writes in v2.writes(sub, full).items():
            if groups.get(g) == "v2":
                out[g] = writes
    uni = res.get("unified")
    if uni:
        if not host.unified:
            raise ConfigError("linux.resources.unified", "needs cgroup v2, which this host "
                                                         "does not have mounted")
        for ctrl, writes in v2.unified_writes(uni).items():
            if ctrl != "cgroup" and ctrl not in host.v2_controllers:
                raise ConfigError(writes[0][0], f"the {ctrl} controller is not available in "
                                                f"{host.unified}/cgroup.controllers")
            out["unified:" + ctrl] = writes
    return out


def _v2_needed(plan: dict, groups: dict) -> set:
    need = set()
    for g in plan:
        if g.startswith("unified:"):
            if g != "unified:cgroup":
                need.add(g[8:])
        elif groups.get(g) == "v2":
            need.add(v2.V2_NAME[g])
    return need


def _merge(old: dict, new: dict) -> dict:
    out = dict(old)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("rdma",):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out
