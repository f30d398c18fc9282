"""Concurrency: runner processes creating, starting, killing and deleting containers at
once — on distinct IDs, and racing on one ID — never corrupt the state: afterwards every
container is either fully there (a readable state, its cgroup directories, its process if it
is not stopped) or fully gone (nothing at all), and delete --force leaves nothing."""
from __future__ import annotations

import json
import os
import random
import subprocess
import threading

from conftest import REPO, RUNNER, cgroup_dirs, marked_pids, new_id

N = 4


def runner(b, *args, timeout=60):
    """stdio to files: a container's init keeps the runner's stdio."""
    err_path = os.path.join(os.path.dirname(b.path), f"err-{threading.get_ident()}")
    with open(os.path.join(os.path.dirname(b.path), "out.log"), "ab") as out, \
            open(err_path, "w+") as err:
        r = subprocess.run(RUNNER + ["--root", b.root] + list(args), stdin=subprocess.DEVNULL,
                           stdout=out, stderr=err, timeout=timeout, cwd=REPO)
        err.seek(0)
        r.stderr = err.read()
    return r


def parallel(fns) -> list:
    errors: list = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def whole_or_gone(b, cid: str) -> str:
    """'there' or 'gone'; AssertionError for anything in between."""
    entries = [e for e in os.listdir(b.root)] if os.path.isdir(b.root) else []
    assert not [e for e in entries if e.startswith(".")], f"private dirs left: {entries}"
    dirs = sorted(cgroup_dirs(cid))
    if cid not in entries:
        assert not dirs, f"{cid}: no state, but cgroups {dirs}"
        assert not marked_pids(b.mark), f"{cid}: no state, but processes"
        return "gone"
    with open(os.path.join(b.root, cid, "state.json")) as f:
        st = json.load(f)  # readable, whole
    r = runner(b, "state", cid)
    assert r.returncode == 0, r.stderr
    recorded = st.get("cgroups", {})
    want = set(recorded.get("paths", {}).values()) | ({recorded["unified"]}
                                                       if recorded.get("unified") else set())
    assert want and all(os.path.isdir(d) for d in want), f"{cid}: cgroups {want} vs {dirs}"
    return "there"


def test_distinct_ids_at_once(bundle):
    """N runners, each its own containers through the whole lifecycle, several times."""
    bundle.sh("sleep 1000")
    bundle.write()
    ids = [[new_id() for _ in range(3)] for _ in range(N)]

    def lifecycle(mine):
        for cid in mine:
            for verb in (["create", "--bundle", bundle.path], ["start"], ["kill"],
                         ["delete", "--force"]):
                r = runner(bundle, *verb, cid)
                assert r.returncode == 0, f"{verb} {cid}: {r.stderr}"

    errors = parallel([lambda m=m: lifecycle(m) for m in ids])
    assert not errors, errors
    for mine in ids:
        for cid in mine:
            bundle.last_id = cid
            assert whole_or_gone(bundle, cid) == "gone"
    assert not os.listdir(bundle.root)


OPS = [["create", "--bundle", None], ["start"], ["kill", "KILL"], ["delete"],
       ["delete", "--force"], ["state"], ["create", "--bundle", None]]


def test_racing_on_one_id(bundle):
    """N runners at once on the same ID, random verbs, several rounds: whatever wins, the
    container ends whole or gone, and then delete --force removes it all."""
    bundle.sh("sleep 1000")
    bundle.write()
    rng = random.Random(12)
    outcomes = set()
    for _ in range(5):
        cid = new_id()
        bundle.last_id = cid
        plans = [[rng.choice(OPS) for _ in range(6)] for _ in range(N)]

        def race(plan):
            for op in plan:
                args = [bundle.path if a is None else a for a in op]
                r = runner(bundle, "kill", cid, "KILL") if op[0] == "kill" else \
                    runner(bundle, *args, cid)
                # refused or done, never a crash: one clean line on failure
                assert r.returncode in (0, 1), f"{op}: exit {r.returncode}: {r.stderr}"
                assert "internal error" not in r.stderr and "Traceback" not in r.stderr, \
                    r.stderr

        errors = parallel([lambda p=p: race(p) for p in plans])
        assert not errors, errors
        outcomes.add(whole_or_gone(bundle, cid))
        r = runner(bundle, "delete", "--force", cid)
        assert r.returncode == 0, r.stderr
        assert whole_or_gone(bundle, cid) == "gone"
    assert outcomes, outcomes


def test_kill_while_the_init_is_not_known(bundle):
    """`kill` of a container still being created, whose init's pid is not recorded yet
    (a createRuntime hook is running): refused — not kill(0), which would signal the
    caller's own process group (the kill runs in a session of its own here, so that a
    regression kills only itself)."""
    import time

    go = os.path.join(os.path.dirname(bundle.path), "go")
    bundle.sh("true")
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": [
        "sh", "-c", f"i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"]}]}
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    log = os.path.join(os.path.dirname(bundle.path), "create.log")
    with open(log, "ab") as out:
        creator = subprocess.Popen(RUNNER + ["--root", bundle.root, "create", "--bundle",
                                             bundle.path, cid], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=out, cwd=REPO)
    try:
        state = os.path.join(bundle.root, cid, "state.json")
        for _ in range(3000):
            if os.path.exists(state):
                break
            time.sleep(0.01)
        with open(state) as f:
            assert json.load(f)["pid"] == 0
        r = subprocess.run(RUNNER + ["--root", bundle.root, "kill", cid, "KILL"],
                           capture_output=True, text=True, cwd=REPO, start_new_session=True,
                           timeout=30)
        assert r.returncode == 1 and "does not exist yet" in r.stderr, (r.returncode, r.stderr)
        open(go, "w").close()  # the hook ends, the create goes on
        assert creator.wait(timeout=30) == 0, "the creator was killed"
    finally:
        if creator.poll() is None:
            creator.kill()
            creator.wait()
    assert runner(bundle, "delete", "--force", cid).returncode == 0
