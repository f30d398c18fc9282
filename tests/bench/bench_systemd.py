"""`make bench`: `run` of a /bin/true container with --systemd-cgroup (a transient scope
started and stopped over D-Bus) and without, side by side with runc 1.1, inside a real
systemd (252, PID 1 of a container the runner runs: tests/integration/systemdkit.py).

    .venv/bin/python tests/bench/bench_systemd.py [--runs N] [--rootless]

Runs are interleaved round-robin inside the systemd container (one shell loop, so the
outer exec's cost is paid once); medians in ms and the runner's ratio to runc.
--rootless: systemd in unified mode, both runtimes run by a user (a user namespace, the
scope started by the user's `systemd --user`), with --systemd-cgroup and without.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, REPO)
import systemdkit  # noqa: E402

ROOTFS = os.path.join(REPO, "build", "bundle", "rootfs")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "20")))
    ap.add_argument("--rootless", action="store_true")
    args = ap.parse_args()
    runc = shutil.which("runc")
    if not runc:
        print("bench_systemd: runc is not installed; skipped")
        return 0
    try:
        systemdkit.ensure()
    except RuntimeError as e:
        print(f"bench_systemd: no systemd rootfs ({e}); skipped")
        return 0
    from libcontainer.default_spec import default_config

    uid, user = 1501, "benchuser"
    ids = [{"containerID": 0, "hostID": uid, "size": 1}]
    cfg = default_config(terminal=False, rootless=args.rootless, uid_mappings=ids,
                         gid_mappings=ids)
    cfg["ociVersion"] = "1.0.2"
    cfg["root"] = {"path": ROOTFS, "readonly": True}
    cfg["process"]["args"] = ["true"]
    who = systemdkit.as_user(uid, user) + " " if args.rootless else ""
    state = f"/run/user/{uid}" if args.rootless else "/run"
    runner = f"{who}{REPO}/.venv/bin/runner --root {state}/bench-runner"
    rc = f"{who}/usr/local/sbin/runc --root {state}/bench-runc"
    cases = [("runner --systemd-cgroup", f"{runner} --systemd-cgroup"),
             ("runc --systemd-cgroup", f"{rc} --systemd-cgroup"),
             ("runner (cgroupfs)", runner), ("runc (cgroupfs)", rc)]
    loop = [f"mkdir -p /tmp/bb && printf %s '{json.dumps(cfg)}' > /tmp/bb/config.json "
            "&& chmod -R a+rX /tmp/bb"]
    # Two phases, each interleaved round-robin: the scopes, then cgroupfs. While scopes come
    # and go, systemd (hybrid) re-realizes the root slice's v1 controllers and trims the
    # empty cgroups at the root of those hierarchies: a cgroupfs container being made then
    # loses its directories (runc's too, in a narrower window).
    for phase in ((0, 1), (2, 3)):
        body = []
        for i in phase:
            body.append(f"s=$(date +%s%N); {cases[i][1]} run --bundle /tmp/bb b{i}-$n "
                        f">/dev/null 2>/tmp/e || echo FAIL {i} run $n: $(head -c 400 /tmp/e "
                        f"| tr '\\n' ' '); e=$(date +%s%N); echo {i} $(( (e-s)/1000 ))")
        loop.append(f"for n in $(seq {args.runs + 2}); do " + "; ".join(body) + "; done; "
                    "sleep 1")
    with tempfile.TemporaryDirectory(prefix="bench-systemd-") as work:
        with systemdkit.Systemd([f"{REPO}/.venv/bin/python", "-m", "runner"], work,
                                f"bench-sd-{os.getpid()}",
                                [systemdkit._bind(REPO), systemdkit._bind(
                                    os.path.realpath(runc), "/usr/local/sbin/runc")],
                                unified=args.rootless) as sd:
            if args.rootless:
                systemdkit.user_session(sd, uid, user)
            out = sd.sh(" && ".join(loop), timeout=60 + args.runs * 10).stdout
    times: dict = {i: [] for i in range(len(cases))}
    for line in out.splitlines():
        words = line.split()
        if words[0] == "FAIL":
            print(f"bench_systemd: {cases[int(words[1])][0]} failed: {' '.join(words[2:])}")
            return 1
        times[int(words[0])].append(int(words[1]) / 1000)
    med = {i: sorted(t[2:])[len(t[2:]) // 2] for i, t in times.items()}  # 2 warm-up runs
    what = "rootless (a user's systemd --user, unified)" if args.rootless else "as root"
    print(f"run of /bin/true inside systemd 252, {what}, {args.runs} runs each (median ms):")
    for i, (name, _) in enumerate(cases):
        print(f"  {name:26s} {med[i]:8.1f}")
    print(f"  ratio runner/runc: --systemd-cgroup {med[0] / med[1]:.2f}, "
          f"cgroupfs {med[2] / med[3]:.2f}; the scope's own cost: runner "
          f"{med[0] - med[2]:+.1f} ms, runc {med[1] - med[3]:+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
