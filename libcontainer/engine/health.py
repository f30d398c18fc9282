"""Health checks (Config.Healthcheck): the test runs as an exec in the container every
Interval (after StartPeriod), with Timeout; Retries failures in a row make it unhealthy;
the last five results are kept in State.Health.Log, as dockerd does. One thread per
checked running container; it ends when the container stops."""
from __future__ import annotations

import os
import threading
import time

from .records import now

NS = 1_000_000_000
DEFAULTS = {"Interval": 30 * NS, "Timeout": 30 * NS, "Retries": 3, "StartPeriod": 0}


def test_args(hc: dict) -> list | None:
    test = list(hc.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return test[1:]
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return ["/bin/sh", "-c", " ".join(test)]


def run_once(engine, rec: dict, args: list, timeout: float) -> tuple:
    """→ (exit code, output): the test as an exec with its output captured."""
    import libcontainer
    from ..spec import Process

    c = libcontainer.load(rec["Id"], engine.runtime_root)
    base = c.spec.process
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = c.exec(Process(args=args, env=base.env, cwd=base.cwd, user=base.user,
                             capabilities=base.capabilities, rlimits=base.rlimits,
                             no_new_privileges=base.no_new_privileges),
                     stdio=(null, w, w), detach=True)
    except Exception as e:
        os.close(r)
        return 1, str(e)
    finally:
        os.close(w)
        os.close(null)
    out = b""
    deadline = time.monotonic() + timeout
    import select

    code = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            os.close(r)
            return -1, f"Health check exceeded timeout ({timeout:g}s)"
        ready, _, _ = select.select([r], [], [], min(left, 0.2))
        if ready:
            data = os.read(r, 65536)
            if data:
                out += data[:4096 - len(out)] if len(out) < 4096 else b""
                continue
            break
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
    os.close(r)
    if code is None:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
    return (code if code >= 0 else 128 - code), out.decode("utf-8", "replace")


def watch(engine, cid: str) -> None:
    rec = engine.containers.get(cid)
    if rec is None:
        return
    hc = dict(DEFAULTS, **{k: v for k, v in (rec["Config"].get("Healthcheck") or {}).items() if v})
    args = test_args(hc)
    if args is None:
        return
    started = rec["State"]["StartedAt"]

    def loop():
        first = True
        while True:
            wait = (hc["StartPeriod"] if first and hc["StartPeriod"] else hc["Interval"]) / NS
            first = False
            time.sleep(min(wait, hc["Interval"] / NS) if wait else hc["Interval"] / NS)
            st = rec["State"]
            if st["Status"] != "running" or st["StartedAt"] != started or cid not in engine.containers:
                return
            t0 = now()
            code, output = run_once(engine, rec, args, hc["Timeout"] / NS)
            with engine.lock:
                h = st.setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
                h["Log"] = (h.get("Log") or [])[-4:] + [{"Start": t0, "End": now(), "ExitCode": code,
                                                         "Output": output}]
                old = h["Status"]
                if code == 0:
                    h["Status"], h["FailingStreak"] = "healthy", 0
                else:
                    h["FailingStreak"] += 1
                    if h["FailingStreak"] >= hc["Retries"]:
                        h["Status"] = "unhealthy"
                if st["Status"] == "running":
                    engine.save(rec)
            if h["Status"] != old:
                engine.events.emit("container", f"health_status: {h['Status']}", cid, engine._attrs(rec))
            engine.on_change(cid)
    threading.Thread(target=loop, daemon=True, name=f"health-{cid[:12]}").start()
