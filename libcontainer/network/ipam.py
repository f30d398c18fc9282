"""The address pool: host-local's config and on-disk format, built in.

Config (the `ipam` object, `"type": "host-local"`): `ranges` — a list of range sets, each a
list of ranges `{subnet, rangeStart, rangeEnd, gateway}` (one address is taken from every
set: one set per family for dual stack) — or the legacy single range `subnet`, `rangeStart`,
`rangeEnd`, `gateway` at the top; `routes`; `dataDir`.

On disk (spec/NETWORK.md), `<dataDir>/<network name>/`, the same files host-local keeps:
  `<address>`             one per allocation: "<container id>\r\n<ifname>"
  `last_reserved_ip.<i>`  the last address handed out from range set i (the next search
                          starts after it, so a freed address is not reused at once)
  `lock`                  flock()ed around every change
An allocation file is made whole (written under a temporary name, then hard-linked into
place, which fails if the address is taken) so a reader never sees a half-written one.
"""
from __future__ import annotations

import fcntl
import os

from .addr import IP, parse_cidr, parse_ip
from .errors import GENERIC, IO_FAILURE, CNIError, bad_config

LINE_BREAK = "\r\n"


class Range:
    __slots__ = ("subnet", "start", "end", "gateway")

    def __init__(self, subnet: IP, start: IP, end: IP, gateway: IP):
        self.subnet, self.start, self.end, self.gateway = subnet, start, end, gateway

    def contains(self, ip: IP) -> bool:
        return (self.subnet.contains(IP(ip.family, ip.value))
                and self.start.value <= ip.value <= self.end.value)

    def overlaps(self, other: "Range") -> bool:
        return (self.subnet.family == other.subnet.family
                and self.start.value <= other.end.value and other.start.value <= self.end.value)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def parse_range(raw: dict, field: str) -> Range:
    if not isinstance(raw, dict):
        raise bad_config(field, "must be an object")
    try:
        subnet = parse_cidr(raw.get("subnet"), strict=True)
    except ValueError as e:
        raise bad_config(f"{field}.subnet", str(e)) from None
    if subnet.prefix > subnet.bits - 2:
        raise bad_config(f"{field}.subnet", f"{subnet.cidr} is too small to allocate from")

    def addr(key: str, default: int) -> IP:
        text = raw.get(key)
        if text in (None, ""):
            return subnet.with_value(default)
        try:
            ip = parse_ip(text)
        except ValueError as e:
            raise bad_config(f"{field}.{key}", str(e)) from None
        if not subnet.contains(ip):
            raise bad_config(f"{field}.{key}", f"{text} is not in {subnet.cidr}")
        return subnet.with_value(ip.value)

    first = subnet.network.value + 1
    # IPv4 keeps the broadcast address out; IPv6 has none (host-local does the same)
    last = subnet.last.value - (0 if subnet.v6 else 1)
    start, end = addr("rangeStart", first), addr("rangeEnd", last)
    if start.value > end.value:
        raise bad_config(f"{field}.rangeEnd", f"{end} is before rangeStart {start}")
    return Range(subnet.network, start, end, addr("gateway", first))


class Config:
    """The parsed `ipam` object."""

    def __init__(self, raw: dict, network: str, state_dir: str):
        field = "ipam"
        if raw.get("ranges") is not None:
            sets = raw["ranges"]
            if not isinstance(sets, list) or not sets:
                raise bad_config("ipam.ranges", "must be a non-empty list of range sets (lists)")
            self.rangesets = []
            for i, rs in enumerate(sets):
                if not isinstance(rs, list) or not rs:
                    raise bad_config(f"ipam.ranges[{i}]", "must be a non-empty list of ranges")
                self.rangesets.append([parse_range(r, f"ipam.ranges[{i}][{j}]")
                                       for j, r in enumerate(rs)])
        elif raw.get("subnet") is not None:
            self.rangesets = [[parse_range(raw, field)]]
        else:
            raise bad_config(field, "needs `ranges` or `subnet`")
        self._check_overlaps()
        self.routes = []
        for i, r in enumerate(raw.get("routes") or []):
            f = f"ipam.routes[{i}]"
            if not isinstance(r, dict):
                raise bad_config(f, "must be an object {dst, gw}")
            try:
                dst = parse_cidr(r.get("dst"))
                gw = parse_ip(r["gw"]) if r.get("gw") else None
            except ValueError as e:
                raise bad_config(f, str(e)) from None
            if gw and gw.family != dst.family:
                raise bad_config(f"{f}.gw", f"{gw} is not of the family of dst {dst.cidr}")
            self.routes.append((dst, gw))
        data = raw.get("dataDir") or os.path.join(state_dir, "networks")
        if not isinstance(data, str) or not data.startswith("/"):
            raise bad_config("ipam.dataDir", "must be an absolute path")
        self.dir = os.path.join(data, network)

    def _check_overlaps(self) -> None:
        flat = []
        for i, rs in enumerate(self.rangesets):
            fams = {r.subnet.family for r in rs}
            if len(fams) > 1:
                raise bad_config(f"ipam.ranges[{i}]", "mixes IPv4 and IPv6 ranges")
            for j, r in enumerate(rs):
                for (i2, j2), r2 in flat:
                    if r.overlaps(r2):
                        raise bad_config(f"ipam.ranges[{i}][{j}]", f"range {r} overlaps with "
                                         f"ipam.ranges[{i2}][{j2}] ({r2})")
                flat.append(((i, j), r))


class Allocation:
    __slots__ = ("ip", "gateway")

    def __init__(self, ip: IP, gateway: IP):
        self.ip, self.gateway = ip, gateway


class Pool:
    """The allocations of one network; every method takes the lock itself."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dir = cfg.dir

    def _lock(self) -> int:
        try:
            os.makedirs(self.dir, 0o755, exist_ok=True)
            fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise CNIError(IO_FAILURE, f"ipam: the pool directory {self.dir}", e.strerror) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def allocate(self, cid: str, ifname: str) -> list:
        """One address from every range set for (cid, ifname); all or nothing."""
        fd = self._lock()
        try:
            owned = self._owned(cid, ifname)
            if owned:
                raise CNIError(GENERIC, f"{owned[0]} has been allocated to {cid}, duplicate "
                               "allocation is not allowed")
            done = []
            try:
                for i, rs in enumerate(self.cfg.rangesets):
                    done.append(self._reserve(i, rs, cid, ifname))
            except BaseException:
                for a in done:
                    self._remove(str(a.ip))
                raise
            return done
        finally:
            os.close(fd)

    def _reserve(self, index: int, rs: list, cid: str, ifname: str) -> Allocation:
        last = self._read(f"last_reserved_ip.{index}")
        try:
            last_ip = parse_ip(last.strip()) if last else None
        except ValueError:
            last_ip = None
        start_r, cur = 0, None
        if last_ip is not None:
            for k, r in enumerate(rs):
                if r.contains(last_ip):
                    start_r, cur = k, last_ip.value
                    break
        taken = set(os.listdir(self.dir))
        content = cid.strip() + LINE_BREAK + ifname
        for ip, r in _walk(rs, start_r, cur):
            text = str(ip)
            if ip.value == r.gateway.value or text in taken:
                continue
            if self._create(text, content):
                self._write(f"last_reserved_ip.{index}", text)
                return Allocation(ip, r.gateway)
        names = ", ".join(str(r) for r in rs)
        raise CNIError(GENERIC, f"no IP addresses available in range set: {names}")

    def release(self, cid: str, ifname: str) -> list:
        """Free every address of (cid, ifname); → the addresses freed."""
        if not os.path.isdir(self.dir):
            return []
        fd = self._lock()
        try:
            owned = self._owned(cid, ifname)
            for name in owned:
                self._remove(name)
            return owned
        finally:
            os.close(fd)

    def owned(self, cid: str, ifname: str) -> list:
        if not os.path.isdir(self.dir):
            return []
        return self._owned(cid, ifname)

    def free_count(self) -> int:
        """Free addresses in the fullest range set (STATUS)."""
        taken = set(os.listdir(self.dir)) if os.path.isdir(self.dir) else set()
        free = []
        for rs in self.cfg.rangesets:
            n = 0
            for r in rs:
                size = r.end.value - r.start.value + 1 - (r.start.value <= r.gateway.value <= r.end.value)
                n += size
            n -= sum(1 for t in taken if _in_set(t, rs))
            free.append(n)
        return min(free)

    def owners(self) -> list:
        """(container id, ifname) of every allocation."""
        if not os.path.isdir(self.dir):
            return []
        out = []
        for name in os.listdir(self.dir):
            if name == "lock" or name.startswith(("last_reserved_ip.", ".")):
                continue
            text = self._read(name)
            if text is not None:
                cid, _, ifname = text.partition(LINE_BREAK)
                out.append((cid.strip(), ifname.strip()))
        return out

    def _owned(self, cid: str, ifname: str) -> list:
        want = cid.strip() + LINE_BREAK + ifname
        out = []
        for name in os.listdir(self.dir):
            if name == "lock" or name.startswith(("last_reserved_ip.", ".")):
                continue
            text = self._read(name)
            # host-local before 0.7 wrote the container id alone
            if text is not None and (text.strip() == want or text.strip() == cid.strip()):
                out.append(name)
        return sorted(out)

    def _read(self, name: str) -> str | None:
        try:
            # newline="": the "\r\n" of the format must come back as it is
            with open(os.path.join(self.dir, name), newline="") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def _create(self, name: str, content: str) -> bool:
        tmp = os.path.join(self.dir, f".tmp-{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(content)
        try:
            os.link(tmp, os.path.join(self.dir, name))
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def _write(self, name: str, content: str) -> None:
        tmp = os.path.join(self.dir, f".tmp-{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(content)
        os.rename(tmp, os.path.join(self.dir, name))

    def _remove(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.dir, name))
        except FileNotFoundError:
            pass

    def remove_if_empty(self) -> None:
        """The network's directory, when it holds no allocation (`runner network rm`; not
        after a DEL: a process waiting for the lock would hold a deleted file's lock)."""
        if not os.path.isdir(self.dir):
            return
        fd = self._lock()
        try:
            left = [n for n in os.listdir(self.dir) if n != "lock"
                    and not n.startswith("last_reserved_ip.")]
            if not left:
                for n in os.listdir(self.dir):
                    self._remove(n)
                os.rmdir(self.dir)
        except OSError:
            pass
        finally:
            os.close(fd)


def _in_set(name: str, rs: list) -> bool:
    try:
        ip = parse_ip(name)
    except ValueError:
        return False
    return any(r.contains(ip) for r in rs)


def _walk(rs: list, start_r: int, cur: int | None):
    """Every address of the set once, as host-local's iterator: from just after `cur` (the
    last reserved) in range start_r, on through the following ranges, wrapping around."""
    n = len(rs)
    for k in range(n + 1):
        r = rs[(start_r + k) % n]
        lo, hi = r.start.value, r.end.value
        if k == 0 and cur is not None:
            first = cur + 1
            for v in range(first, hi + 1):
                yield r.subnet.with_value(v), r
        elif k == n:
            # back in the first range: the part before where we started
            if cur is not None:
                for v in range(lo, cur + 1):
                    yield r.subnet.with_value(v), r
        else:
            for v in range(lo, hi + 1):
                yield r.subnet.with_value(v), r
