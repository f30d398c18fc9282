"""`make bench`, grading: 200 submissions (C and Python; compile + 5 inputs; some wrong,
looping, crashing, not compiling, allocating without end) on a Debian image made with
debootstrap (gcc, python3), through libcontainer.sandbox and, on the same submissions,
epicbox on a private dockerd, a `docker run --rm` loop, a `podman run --rm --runtime runc`
loop and bubblewrap. Each engine's verdicts are checked against the known ones (and so
against each other); the throughputs are printed as ratios to the sandbox's.

    .venv/bin/python tests/bench/bench_grading.py [--submissions N] [--peer-submissions N]
        [--engines sandbox,epicbox,docker,podman,bwrap] [--image DIR] [--concurrency 1,2]
        [--chunk K]

--concurrency: each level in turn, every engine graded by that many threads at once (as a
grader server would: a thread per submission in flight; each engine gets the same). The
engines take turns, K submissions at a time (round-robin), so a change of the machine's
load meanwhile weighs on all of them alike; each engine's time is the sum of its turns.

The image is made when missing (grading_image.py; a few minutes, once). epicbox is
installed from PyPI into the venv when missing. The peers take long (each step is a
container started by a daemon or a CLI): --peer-submissions runs them on the first N
submissions only (the sandbox runs them too, and the ratio is of submissions a second).
Progress on a terminal, quiet in a pipe."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))  # netnskit
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import grading_image  # noqa: E402
from grading_workload import grade, submissions  # noqa: E402

ALL = ("sandbox", "epicbox", "docker", "podman", "bwrap")
# where an engine's verdict differs from the known one by its nature, not by a fault
EXPECTED_DIFFERENCE = {("bwrap", "MLE"): "RE"}  # RLIMIT_AS: malloc fails, no OOM kill


def run_chunk(engine, subs: list, threads: int) -> tuple:
    """Grade `subs` with `threads` at once: (verdicts in order, seconds)."""
    t = time.monotonic()
    if threads <= 1:
        verdicts = [grade(engine, sub) for sub in subs]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as ex:
            verdicts = list(ex.map(lambda sub: grade(engine, sub), subs))
    return verdicts, time.monotonic() - t


def ensure_epicbox() -> None:
    try:
        import epicbox  # noqa: F401
        import urllib3
        ok = int(urllib3.__version__.split(".")[0]) < 2
    except ImportError:
        ok = False
    if not ok:
        # epicbox 1.1 passes urllib3's Retry(method_whitelist=), gone in urllib3 2
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "epicbox", "urllib3<2"],
                       check=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--submissions", type=int, default=200)
    ap.add_argument("--peer-submissions", type=int, default=200)
    ap.add_argument("--engines", default=",".join(ALL))
    ap.add_argument("--image", default=None)
    ap.add_argument("--concurrency", default="1,2",
                    help="comma-separated thread counts, each a round of its own")
    ap.add_argument("--chunk", type=int, default=10,
                    help="submissions per engine turn (round-robin)")
    ap.add_argument("--trivial", type=int, default=50,
                    help="then this many runs of `true` per engine: the cost of a run alone")
    args = ap.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ALL:
            raise SystemExit(f"--engines: unknown engine {e!r} (want {', '.join(ALL)})")
    try:
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        raise SystemExit(f"--concurrency: {args.concurrency!r} is not a list of numbers")
    if not levels or min(levels) < 1 or args.chunk < 1:
        raise SystemExit("--concurrency and --chunk: want numbers of at least 1")
    tty = sys.stderr.isatty()
    image = grading_image.ensure(args.image, quiet=not tty)
    subs = submissions(args.submissions)
    peer_subs = subs[:min(args.peer_submissions, len(subs))]
    top = tempfile.mkdtemp(prefix="sbxbench-", dir="/tmp")
    os.chmod(top, 0o755)
    import grading_engines as ge

    results = {}  # (engine, threads) → (submissions, verdicts, seconds)
    trivial = {}
    cpu = {}  # threads → the sandbox's runs' own CPU seconds: (all, the peers' submissions)
    same = {}  # threads → the sandbox's (submissions, seconds) on the peers' submissions
    dockerd = None
    engs = {}
    try:
        for name in engines:
            if name == "sandbox":
                engs[name] = ge.SandboxEngine(image, top)
            elif name in ("epicbox", "docker"):
                if dockerd is None:
                    if name == "epicbox":
                        ensure_epicbox()
                    dockerd = ge.Dockerd(top, image)
                if name == "epicbox":
                    ensure_epicbox()
                engs[name] = ge.EpicboxEngine(dockerd) if name == "epicbox" else \
                    ge.DockerRunEngine(dockerd, top)
            elif name == "podman":
                engs[name] = ge.PodmanEngine(top, image)
            else:
                engs[name] = ge.BwrapEngine(image, top)
        for threads in levels:
            done = {name: ([], [], 0.0) for name in engines}
            for at in range(0, len(subs), args.chunk):
                for name, eng in engs.items():
                    work = subs if name == "sandbox" else peer_subs
                    part = work[at:at + args.chunk]
                    if not part:
                        continue
                    cpu0 = getattr(eng, "cpu", 0.0)
                    verdicts, secs = run_chunk(eng, part, threads)
                    if name == "sandbox" and at < len(peer_subs):
                        n0, t0 = same.get(threads, (0, 0.0))
                        same[threads] = (n0 + len(part), t0 + secs)
                    if name == "sandbox":
                        c_all, c_peer = cpu.get(threads, (0.0, 0.0))
                        used = eng.cpu - cpu0
                        cpu[threads] = (c_all + used,
                                        c_peer + (used if at < len(peer_subs) else 0.0))
                    w, v, t = done[name]
                    done[name] = (w + part, v + verdicts, t + secs)
                if tty:
                    sys.stderr.write(f"\r  {threads} thread(s): {min(at + args.chunk, len(subs))}"
                                     f"/{len(subs)} submissions ")
            if tty:
                sys.stderr.write("\n")
            for name in engines:
                results[(name, threads)] = done[name]
                w, _, t = done[name]
                print(f"  done: {name}, {threads} thread(s), {len(w)} submissions in {t:.1f} s",
                      flush=True)
        for name, eng in engs.items():
            t = time.monotonic()
            for _ in range(args.trivial):
                eng.trivial()
            trivial[name] = (args.trivial, time.monotonic() - t)
    finally:
        for eng in engs.values():
            eng.close()
        if dockerd is not None:
            dockerd.close()
        shutil.rmtree(top, ignore_errors=True)
    return report(results, trivial, levels, cpu, len(peer_subs), same)


def report(results: dict, trivial: dict, levels: list, cpu: dict | None = None,
           npeer: int = 0, same: dict | None = None) -> int:
    """The table per level; `same`: the sandbox's (submissions, seconds) on the peers'
    submissions, against which the peers' ratios are taken (the same mix of kinds)."""
    print("grading: submissions (compile + up to 5 tests each) through each engine; "
          f"load average {os.getloadavg()[0]:.1f}")
    bad = 0
    for threads in levels:
        base = results.get(("sandbox", threads))
        base_rate = len(base[0]) / base[2] if base else None
        if base and (same or {}).get(threads) and same[threads][0] < len(base[0]):
            n, t = same[threads]
            base_rate = n / t  # the peers graded the first n: compare on those
        print(f"  {threads} thread(s) at once:")
        print(f"  {'engine':12} {'subs':>5} {'seconds':>8} {'subs/s':>7} {'vs sandbox':>11}  "
              f"verdicts (AC/WA/TLE/MLE/RE/CE)  wrong")
        for (name, t), (work, verdicts, elapsed) in results.items():
            if t != threads:
                continue
            rate = len(work) / elapsed
            ratio = f"{base_rate / rate:9.1f}x" if base_rate and name != "sandbox" else \
                "        -"
            counts = "/".join(str(verdicts.count(v)) for v in ("AC", "WA", "TLE", "MLE", "RE",
                                                               "CE"))
            wrong = [(s.n, s.expected, v) for s, v in zip(work, verdicts)
                     if v != EXPECTED_DIFFERENCE.get((name, s.expected), s.expected)]
            bad += len(wrong)
            print(f"  {name:12} {len(work):5d} {elapsed:8.1f} {rate:7.2f} {ratio:>11}  "
                  f"{counts:30} {len(wrong)}")
            if name == "sandbox" and base_rate != rate:
                n, t = same[threads]
                print(f"  {'  (the first':12} {n:5d} {t:8.1f} {n / t:7.2f}   the peers' "
                      "submissions: their ratios are to this)")
            for n, want, got in wrong[:5]:
                print(f"      submission {n}: want {want}, got {got}")
        if base:
            # the same submissions, engine by engine: the verdicts agree
            for (name, t), (work, verdicts, _) in results.items():
                if t != threads or name == "sandbox":
                    continue
                mine = base[1][:len(work)]
                diff = sum(1 for s, a, b in zip(work, verdicts, mine)
                           if EXPECTED_DIFFERENCE.get((name, s.expected), b) != a)
                print(f"  {name}: {len(work) - diff}/{len(work)} verdicts as the sandbox's")
    for name in dict.fromkeys(n for n, _ in results):
        rates = [len(results[(name, t)][0]) / results[(name, t)][2] for t in levels
                 if (name, t) in results]
        if len(rates) > 1:
            print(f"  {name}: {levels[-1]} threads vs 1: {rates[-1] / rates[0]:.2f}x")
    print("  (vs sandbox: how many times the sandbox's submissions a second)")
    cores = len(os.sched_getaffinity(0))
    for threads in levels:
        if threads not in (cpu or {}) or ("sandbox", threads) not in results:
            continue
        # the workload's own CPU (compiles, interpreters, the loops' CPU limit) bounds any
        # engine: one costing nothing would still take that CPU time, spread over at most
        # min(threads, cores) cores
        c_all, c_peer = cpu[threads]
        par = min(threads, cores)
        work, _, secs = results[("sandbox", threads)]
        print(f"  {threads} thread(s): the sandbox's runs used {c_all:.1f} s of CPU themselves "
              f"(their cgroups) in {secs:.1f} s for {len(work)} submissions; a sandbox "
              f"costing nothing: at most {len(work) / (c_all / par):.2f} subs/s")
        peers = [(n, results[(n, t)]) for n, t in results if t == threads and n != "sandbox"]
        if peers and c_peer:
            # (x peer = the peer's seconds over the least a zero-cost engine would take)
            bounds = ", ".join(f"{p[2] / (c_peer / par):.1f}x {n}" for n, p in peers)
            print(f"    on the peers' {npeer} submissions: {c_peer:.1f} s of CPU → a zero-cost "
                  f"sandbox at most {bounds}")
    if trivial.get("sandbox") and trivial["sandbox"][0]:
        n0, t0 = trivial["sandbox"]
        print("a run alone (`true`, the run limits): runs a second, and the sandbox's vs each")
        for name, (n, t) in trivial.items():
            if n:
                print(f"  {name:12} {n / t:8.1f}/s  {(n0 / t0) / (n / t):7.1f}x")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
