"""Verbs about a container's cgroup: update (limits of a live container) and events
(stats, OOM kills). pause and resume live in lifecycle.py (they are state changes)."""
from __future__ import annotations

import sys

from libcontainer import container as lc
from libcontainer.errors import InvalidArgument

from .args import Flag, flag_help, parse, positional_id

# runc's update flags: (flag, dest, linux.resources path, kind)
UPDATE_MAP = [
    ("--memory", "memory", ("memory", "limit"), "size"),
    ("--memory-reservation", "memory_reservation", ("memory", "reservation"), "size"),
    ("--memory-swap", "memory_swap", ("memory", "swap"), "size"),
    ("--kernel-memory-tcp", "kernel_memory_tcp", ("memory", "kernelTCP"), "size"),
    ("--cpu-shares,--cpu-share", "cpu_shares", ("cpu", "shares"), "int"),
    ("--cpu-quota", "cpu_quota", ("cpu", "quota"), "int"),
    ("--cpu-period", "cpu_period", ("cpu", "period"), "int"),
    ("--cpu-burst", "cpu_burst", ("cpu", "burst"), "int"),
    ("--cpu-rt-period", "cpu_rt_period", ("cpu", "realtimePeriod"), "int"),
    ("--cpu-rt-runtime", "cpu_rt_runtime", ("cpu", "realtimeRuntime"), "int"),
    ("--cpu-idle", "cpu_idle", ("cpu", "idle"), "int"),
    ("--cpuset-cpus", "cpuset_cpus", ("cpu", "cpus"), "str"),
    ("--cpuset-mems", "cpuset_mems", ("cpu", "mems"), "str"),
    ("--pids-limit", "pids_limit", ("pids", "limit"), "int"),
    ("--blkio-weight", "blkio_weight", ("blockIO", "weight"), "int"),
]
UPDATE_FLAGS = [Flag("--resources,-r", "resources", True, "",
                     "a linux.resources JSON file ('-' for stdin)")] + [
    Flag(names, dest, True, None, f"linux.resources.{a}.{b}") for names, dest, (a, b), _ in UPDATE_MAP
] + [Flag("--help,-h", "help")]

EVENTS_FLAGS = [
    Flag("--stats", "stats", help="print the stats once and exit"),
    Flag("--interval", "interval", True, "5s", "time between stats (e.g. 5s, 500ms)"),
    Flag("--help,-h", "help"),
]

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size(text: str, flag: str) -> int:
    """Bytes, with runc's (docker's) binary suffixes: 512m, 1g, 100k; -1 for unlimited."""
    t = text.strip().lower()
    if t == "-1":
        return -1
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and len(t) > len(suffix) and t[-len(suffix) - 1] in "kmgt":
            t = t[:-len(suffix)]
            break
    unit = t[-1:] if t[-1:] in _UNITS and not t[-1:].isdigit() else ""
    num = t[:-1] if unit else t
    try:
        return int(float(num) * _UNITS[unit])
    except ValueError:
        raise InvalidArgument(f"{flag}: {text!r} is not a size (like 512m or 1g)") from None


def duration(text: str, flag: str) -> float:
    """Seconds from `5s`, `500ms`, `1m`, `2` (seconds)."""
    for suffix, mult in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("", 1)):
        if text.endswith(suffix):
            try:
                v = float(text[:-len(suffix)] if suffix else text) * mult
            except ValueError:
                continue
            if v <= 0:
                raise InvalidArgument(f"{flag}: must be positive")
            return v
    raise InvalidArgument(f"{flag}: {text!r} is not a duration (like 5s or 500ms)")


def update_resources(opts: dict) -> dict:
    """The linux.resources object an `update` command line asks for."""
    res: dict = {}
    if opts["resources"]:
        from libcontainer import jsonio

        src = opts["resources"]
        try:
            if src == "-":
                text = sys.stdin.read()
            else:
                with open(src, "rb") as f:
                    text = f.read()
            res = jsonio.loads(text)
        except OSError as e:
            raise InvalidArgument(f"--resources: {src}: {e.strerror}") from None
        except ValueError as e:
            raise InvalidArgument(f"--resources: {src}: invalid JSON: {e}") from None
        if not isinstance(res, dict):
            raise InvalidArgument(f"--resources: {src}: must be a JSON object (linux.resources)")
    for names, dest, (a, b), kind in UPDATE_MAP:
        v = opts[dest]
        if v is None:
            continue
        flag = names.split(",")[0]
        if kind == "size":
            val = size(v, flag)
        elif kind == "int":
            try:
                val = int(v)
            except ValueError:
                raise InvalidArgument(f"{flag}: {v!r} is not a number") from None
        else:
            val = v
        res.setdefault(a, {})[b] = val
    if not res:
        raise InvalidArgument("update: nothing to change (give --resources or a limit flag)")
    return res


def cmd_update(ctx, argv: list) -> int:
    opts, pos = parse(argv, UPDATE_FLAGS)
    if opts["help"]:
        return flag_help("update", UPDATE_FLAGS)
    cid = positional_id(pos, "update")
    res = update_resources(opts)
    lc.load(cid, ctx.root).update(res)
    return 0


def cmd_events(ctx, argv: list) -> int:
    opts, pos = parse(argv, EVENTS_FLAGS)
    if opts["help"]:
        return flag_help("events", EVENTS_FLAGS)
    cid = positional_id(pos, "events")
    interval = duration(opts["interval"], "--interval")
    from libcontainer import jsonio

    c = lc.load(cid, ctx.root)
    if c.status() == "stopped":
        from libcontainer.errors import WrongState

        raise WrongState(f"container {cid!r} is not running")
    cg = c.cgroup("get events of")
    if opts["stats"]:
        _emit(jsonio.dumps({"type": "stats", "id": cid, "data": cg.stats()}))
        return 0
    from libcontainer.cgroups import events

    def alive() -> bool:
        return c.status() != "stopped"

    try:
        for ev in events.stream(cg, cid, interval, alive):
            _emit(jsonio.dumps(ev))
    except BrokenPipeError:
        pass
    return 0


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
