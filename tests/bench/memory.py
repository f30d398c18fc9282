"""`make bench` (bench.py), issue 21 target 6: the memory one `run` costs, like for like.

bench.py's first table gives each runtime's peak RSS: wait4's ru_maxrss of the command from
a C parent. That is the largest of the caller's own high-water mark and those of the
processes it reaped (the kernel keeps a high-water mark across execve, so the container's
init counts with what it was before its exec, and a `/bin/true` container with its own
busybox: 1.3 MiB). A maximum, not a sum: a process of the runtime that is neither the
caller nor reaped with its memory still in it is not in it. So this table adds, for each
runtime, the private memory (USS: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup)
of the one other process the call keeps alive beside the caller:

- runc: `runc init` (a Go process of its own until it execs the container). Read while it
  waits on its exec fifo after a `runc create`, with a foreground `runc run` alive beside
  it, so that the runc binary's pages a running runc also maps count as shared, as they
  are during a `runc run`.
- crun: the child crun clones for the container (a copy-on-write fork until its exec),
  read the same way after `crun create`.
- runner served: the warm server's worker that serves the call (a fork of the server:
  what it wrote since, the pages it copied ahead included), sampled every few ms while it
  serves a foreground `run` of a `sleep` container, its largest sample.
- runner plain: nothing: its child shares the runner's memory until its execve (clone3
  with CLONE_VM | CLONE_VFORK).

The warm server's standing memory is printed beside it, not added per call: the server
(its RSS, of which most is shared with its workers) and its spare workers waiting for the
next calls (each one's USS: the pages copied ahead, runner/warm_pages.py). A served call
takes a spare and the server forks another, so while a call is served the machine holds
the caller, the worker, and as many spares as before.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

SLEEP = "0.4"  # the sampled run's container: long enough for a few dozen samples


def smaps(pid: int) -> dict:
    """KiB: Rss, Pss, Private (clean + dirty), Anonymous; and VmHWM."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0])
    out["Private"] = out["Private_Clean"] + out["Private_Dirty"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out["VmHWM"] = int(line.split()[1])
    return out


def children(pid: int) -> list:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def median(xs: list) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def served_worker(runner: str, root: Path, bundle: Path, server: int, runs: int,
                  tag: str) -> dict:
    """The worker's largest USS while it serves a foreground `run` of `bundle` (a sleep),
    the caller's VmHWM (after its exec of warm-spawn: its own, without the container's),
    and the server's and its spares' memory before each run; medians over `runs`."""
    found: dict = {"worker": [], "caller": [], "server rss": [], "server uss": [],
                   "spare uss": [], "spares": []}
    for n in range(runs):
        time.sleep(0.1)  # the server refills its spares once calls pause
        spares = []
        for pid in children(server):
            try:
                spares.append(smaps(pid)["Private"])
            except OSError:
                pass  # the worker of the last call, exiting
        srv = smaps(server)
        found["server rss"].append(srv["Rss"])
        found["server uss"].append(srv["Private"])
        found["spares"].append(len(spares))
        found["spare uss"].append(median(spares) if spares else 0)
        # the worker is the server's child that took the caller's working directory
        caller = subprocess.Popen([runner, "--root", str(root), "run", "--bundle", str(bundle),
                                   f"{tag}-mem-{n}"], cwd=bundle, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL)
        worker, caller_hwm, samples = 0, 0, []
        deadline = time.monotonic() + 30
        # sampled until the worker is gone: after its reply it still reports the pages it
        # wrote (warm_pages)
        while (caller.poll() is None or worker) and time.monotonic() < deadline:
            try:
                if not worker and caller.poll() is None:
                    worker = next((c for c in children(server)
                                   if os.readlink(f"/proc/{c}/cwd") == str(bundle)), 0)
                if worker:
                    samples.append(smaps(worker)["Private"])
                if caller.poll() is None and \
                        os.readlink(f"/proc/{caller.pid}/exe").endswith("warm-spawn"):
                    caller_hwm = max(caller_hwm, smaps(caller.pid)["VmHWM"])
            except (OSError, ValueError, KeyError):  # gone (a zombie has no smaps)
                if caller.poll() is not None:
                    worker = 0
            time.sleep(0.002)
        if caller.wait() != 0 or not samples:
            raise RuntimeError(f"served run {tag}-mem-{n}: exit {caller.returncode}, "
                               f"{len(samples)} samples of its worker")
        found["worker"].append(max(samples))
        found["caller"].append(caller_hwm)
    return {key: median(values) for key, values in found.items()}


def init_uss(prefix: list, bundle: Path, beside: Path, runs: int, tag: str, clean) -> float:
    """Median USS of a runtime's container process waiting on its exec fifo after
    `create` of `bundle`, with a foreground `run` of `beside` (a long sleep) of the same
    runtime alive."""
    fg_id = f"{tag}-fg"
    fg = subprocess.Popen([*prefix, "run", "--bundle", str(beside), fg_id],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    uss = []
    try:
        time.sleep(0.3)
        for n in range(runs):
            if fg.poll() is not None:
                raise RuntimeError(f"{' '.join(prefix)} run {fg_id}: exit {fg.returncode}")
            cid = f"{tag}-{n}"
            subprocess.run([*prefix, "create", "--bundle", str(bundle), cid], check=True,
                           stdin=subprocess.DEVNULL)
            try:
                st = json.loads(subprocess.run([*prefix, "state", cid], capture_output=True,
                                               check=True).stdout)
                uss.append(smaps(st["pid"])["Private"])
            finally:
                subprocess.run([*prefix, "delete", "-f", cid], check=True)
                clean(cid)
    finally:
        subprocess.run([*prefix, "kill", fg_id, "KILL"], capture_output=True)
        fg.wait()
        subprocess.run([*prefix, "delete", "-f", fg_id], capture_output=True)
        clean(fg_id)
    return median(uss)


def report(peak: dict, served: dict, inits: dict) -> str:
    """peak: name → the first table's peak RSS (KiB, the median of its runs); served: served_worker's; inits:
    runtime → init_uss's. Prints the table; → its summary line."""
    rows = [("runner", peak.get("runner"), 0, "its child shares its memory until execve")]
    if served:
        rows.append(("runner served", peak.get("runner served"), served["worker"],
                     "the warm server's worker, largest sample"))
    rows.append(("runc", peak.get("runc"), inits.get("runc"), "runc init, at its exec fifo"))
    rows.append(("crun", peak.get("crun (raw)"), inits.get("crun"),
                 "its child for the container, at its exec fifo (peak incl. the wrapper)"))
    rows = [r for r in rows if r[1] is not None and r[2] is not None]
    total = {name: caller + other for name, caller, other, _ in rows}
    print("\nmemory of one `run` (MiB): the command's peak RSS (the table above, median) + the "
          "USS of the process the call keeps beside it (tests/bench/memory.py)")
    print(f"{'':<15}{'peak RSS':>9}{'+ USS':>8}{'= total':>9}{'/runc':>7}   the other process")
    for name, caller, other, note in rows:
        ratio = f"{total[name] / total['runc']:6.2f}x" if "runc" in total else ""
        print(f"{name:<15}{caller / 1024:>9.2f}{other / 1024:>8.2f}{total[name] / 1024:>9.2f}"
              f"{ratio:>7}   {note}")
    if not served:
        return ""
    print(f"runner served: its caller's own VmHWM (warm-spawn) {served['caller'] / 1024:.2f} "
          f"MiB; standing, not per call: the server RSS {served['server rss'] / 1024:.1f} MiB "
          f"(USS {served['server uss'] / 1024:.1f}), {served['spares']:.0f} spare workers of "
          f"USS {served['spare uss'] / 1024:.2f} MiB each")
    parts = [f"{n} {total[n] / 1024:.1f} MiB" for n in total]
    if "runc" in total:
        parts = [p + (f" ({total[n] / total['runc']:.2f}x runc)" if n != "runc" else "")
                 for p, n in zip(parts, total)]
    return "memory of a run (peak RSS + the other process's USS): " + ", ".join(parts)
