"""`make bench` (networking): runner-cni side by side with the reference plugins
(/usr/lib/cni: bridge + host-local, + portmap for port mappings), on the same configuration:

  - ADD and DEL latency of one container, one call at a time (median, p90), two cases:
    bridge + pool + ipMasq, and the same with two port mappings (reference: bridge then
    portmap, as a conflist runs them);
  - attach throughput: 50 ADDs started at once, then 50 DELs (wall time, containers/s);
  - the plugin's start-up: `runner-cni` VERSION, and its import time (-X importtime).

Wall times move with the load on the machine; the CPU time (user+sys of the plugin and of
what it runs, nft or iptables) is printed beside ADD and DEL for that reason.

    .venv/bin/python tests/bench/bench_network.py [--runs N]

Everything happens in network namespaces made here (a "host" holding the bridge, one per
container), held by `sleep` processes killed at the end; the state goes to a temporary
directory. The bench process itself enters the host namespace, so no nsenter is timed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OURS = str(REPO / ".venv" / "bin" / "runner-cni")
REF = "/usr/lib/cni"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))  # netnskit

from libcontainer.network.netns import setns  # noqa: E402
from netnskit import Netns  # noqa: E402

TTY = sys.stderr.isatty()


def progress(msg: str) -> None:
    if TTY:
        sys.stderr.write(f"\r\033[K{msg}")
        sys.stderr.flush()


def confs(state: str, ours: bool, maps: list) -> list:
    """The plugin chain: [(executable, conf)]."""
    ipam = {"type": "host-local", "dataDir": os.path.join(state, "networks"),
            "ranges": [[{"subnet": "10.84.0.0/22"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    base = {"cniVersion": "1.0.0", "name": "benchnet", "bridge": "bench0", "isGateway": True,
            "ipMasq": True, "ipam": ipam}
    if ours:
        c = dict(base, type="runner-cni", stateDir=state)
        if maps:
            c["runtimeConfig"] = {"portMappings": maps}
        return [(OURS, c)]
    chain = [(f"{REF}/bridge", dict(base, type="bridge"))]
    if maps:
        chain.append((f"{REF}/portmap", {"cniVersion": "1.0.0", "name": "benchnet",
                                         "type": "portmap", "capabilities": {"portMappings": True},
                                         "runtimeConfig": {"portMappings": maps}}))
    return chain


def invoke(exe: str, command: str, conf: dict, cid: str, netns: str) -> dict | None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command,
           "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": REF}
    r = subprocess.run([exe], input=json.dumps(conf).encode(), capture_output=True, env=env,
                       timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"{exe} {command} failed: {r.stdout.decode()} {r.stderr.decode()}")
    return json.loads(r.stdout) if r.stdout.strip() else None


def add(chain: list, cid: str, netns: str) -> dict:
    prev = None
    for exe, conf in chain:
        c = dict(conf, prevResult=prev) if prev else conf
        prev = invoke(exe, "ADD", c, cid, netns)
    return prev


def delete(chain: list, cid: str, netns: str, result: dict) -> None:
    for exe, conf in reversed(chain):
        c = dict(conf, prevResult=result) if len(chain) > 1 else conf
        invoke(exe, "DEL", c, cid, netns)


def cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pct(xs: list, p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def latency(state: str, runs: int, maps: list, label: str) -> dict:
    """Interleaved: ours and the reference take turns, so noise falls on both alike."""
    out = {}
    ns = Netns(hold=3600)
    try:
        times = {k: {"ADD": [], "DEL": [], "ADD cpu": [], "DEL cpu": [], "ADD+DEL": [],
                     "ADD+DEL cpu": []} for k in ("ours", "ref")}
        chains = {"ours": confs(state, True, maps), "ref": confs(state + "-ref", False, maps)}
        for k, chain in chains.items():  # warm-up: the bridge exists, caches are hot
            delete(chain, "warm", ns.path, add(chain, "warm", ns.path))
        for i in range(runs):
            progress(f"{label}: {i + 1}/{runs}")
            for k, chain in chains.items():
                c0, t0 = cpu(), time.perf_counter()
                res = add(chain, f"l{i}", ns.path)
                c1, t1 = cpu(), time.perf_counter()
                delete(chain, f"l{i}", ns.path, res)
                c2, t2 = cpu(), time.perf_counter()
                times[k]["ADD"].append((t1 - t0) * 1000)
                times[k]["DEL"].append((t2 - t1) * 1000)
                # CPU time of the plugins and what they ran (nft, iptables): what load on
                # the machine does not change, unlike the wall time
                times[k]["ADD cpu"].append((c1 - c0) * 1000)
                times[k]["DEL cpu"].append((c2 - c1) * 1000)
                times[k]["ADD+DEL"].append((t2 - t0) * 1000)  # the target: one sum
                times[k]["ADD+DEL cpu"].append((c2 - c0) * 1000)
        for k in times:
            out[k] = {c: (statistics.median(v), pct(v, 0.9)) for c, v in times[k].items()}
    finally:
        ns.close()
    return out


def throughput(state: str, n: int) -> dict:
    out = {}
    for k, ours in (("ref", False), ("ours", True)):
        chain = confs(f"{state}-{k}-tp", ours, [])
        nss = [Netns(hold=3600) for _ in range(n)]
        try:
            progress(f"throughput ({k}): {n} ADDs at once")
            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                t0 = time.perf_counter()
                results = list(pool.map(lambda i: add(chain, f"t{i}", nss[i].path), range(n)))
                t1 = time.perf_counter()
                addrs = {r["ips"][0]["address"] for r in results}
                assert len(addrs) == n, "duplicate addresses"
                progress(f"throughput ({k}): {n} DELs at once")
                t2 = time.perf_counter()
                list(pool.map(lambda i: delete(chain, f"t{i}", nss[i].path, results[i]), range(n)))
                t3 = time.perf_counter()
            out[k] = (t1 - t0, t3 - t2)
        finally:
            for h in nss:
                h.close()
    return out


def startup(runs: int) -> dict:
    def once(argv: list, conf: str) -> float:
        t0 = time.perf_counter()
        subprocess.run(argv, input=conf.encode(), capture_output=True,
                       env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"})
        return (time.perf_counter() - t0) * 1000

    conf = '{"cniVersion": "1.0.0"}'
    ours = [once([OURS], conf) for _ in range(runs)]
    ref = [once([f"{REF}/bridge"], conf) for _ in range(runs)]
    py = str(REPO / ".venv" / "bin" / "python")
    r = subprocess.run([py, "-I", "-S", "-X", "importtime", "-c",
                        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                        "import libcontainer.network.main, libcontainer.network.cni, "
                        "libcontainer.network.bridge"], capture_output=True, text=True)
    total = own = 0
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].split(":")[-1].strip().isdigit():
            us = int(parts[0].split(":")[-1])
            total += us  # every module's own time: the interpreter's start-up ones too
            if parts[2].strip().startswith("libcontainer"):
                own += us
    return {"ours": statistics.median(ours), "ref": statistics.median(ref),
            "import_ms": total / 1000, "own_ms": own / 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_NET_RUNS", "20")))
    ap.add_argument("--containers", type=int, default=50)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_network: needs root (network namespaces)")
        return 1
    for p in (OURS, f"{REF}/bridge", f"{REF}/portmap", f"{REF}/host-local"):
        if not os.access(p, os.X_OK):
            print(f"bench_network: {p} is missing (make venv; containernetworking-plugins)")
            return 1
    tmp = tempfile.mkdtemp(prefix="bench-net-")
    host = Netns(hold=3600)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(host.path, os.O_RDONLY)
    try:
        setns(fd)  # this process is the host now: plugins start here, no nsenter timed
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        st = startup(args.runs)
        plain = latency(os.path.join(tmp, "a"), args.runs, [], "ADD/DEL")
        maps = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]
        mapped = latency(os.path.join(tmp, "b"), args.runs, maps, "ADD/DEL with ports")
        tp = throughput(os.path.join(tmp, "c"), args.containers)
    finally:
        setns(home)
        os.close(fd)
        os.close(home)
        host.close()
        shutil.rmtree(tmp, ignore_errors=True)
    progress("")

    def row(name, ours, ref, unit="ms"):
        print(f"  {name:<34} {ours:9.1f} {unit:<3} {ref:9.1f} {unit:<3} {ours / ref:7.2f}x")

    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"\nrunner-cni vs reference plugins ({REF}), {args.runs} runs, median (p90); "
          f"load average {load}")
    print(f"  {'':<34} {'runner-cni':>13} {'reference':>13} {'ratio':>8}")
    row("start-up (VERSION)", st["ours"], st["ref"])
    for label, res in (("bridge+ipMasq", plain), ("bridge+ipMasq+2 ports", mapped)):
        for c in ("ADD", "DEL", "ADD+DEL"):
            o, r = res["ours"][c], res["ref"][c]
            row(f"{c} {label}", o[0], r[0])
            print(f"  {'':<34} (p90 {o[1]:.1f})     (p90 {r[1]:.1f})")
            o, r = res["ours"][c + " cpu"], res["ref"][c + " cpu"]
            row("  CPU time (user+sys)", o[0], r[0])
    n = args.containers
    for i, c in enumerate(("ADD", "DEL")):
        o, r = tp["ours"][i], tp["ref"][i]
        row(f"{n} x {c} at once (wall)", o * 1000, r * 1000)
        print(f"  {'':<34} {n / o:9.1f} /s  {n / r:9.1f} /s")
    print(f"  plugin imports (-X importtime, self times): {st['import_ms']:.1f} ms in all, "
          f"{st['own_ms']:.1f} ms of them libcontainer's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
