"""Many short containers from one process: `run_many` runs foreground containers on a few
threads. The containers' own work (clone, mounts, exec) and their teardown run in the
kernel and in the shim with the GIL released, so threads overlap them on several cores."""
from __future__ import annotations

from .errors import ContainerError


def run_many(jobs, *, workers: int = 4, **common) -> list:
    """Run each job, `workers` at a time, and wait for them all.

    A job is `(bundle, container_id)` or `(bundle, container_id, {run() keyword: value})`;
    `common` are run() keywords for every job (root, stdio, ...). Returns, in job order,
    each container's exit code, or the ContainerError that stopped it from running. Every
    container is removed before this returns (cleanup runs in the background meanwhile)."""
    import threading

    from .creation import run, wait_cleanup

    if workers < 1:
        from .errors import InvalidArgument

        raise InvalidArgument(f"workers: {workers} is not a positive number")
    todo = list(enumerate(jobs))
    results: list = [None] * len(todo)
    bugs: list = []
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not todo or bugs:
                    return
                i, job = todo.pop(0)
            bundle, cid, *more = job
            kw = dict(common, cleanup="background")
            kw.update(more[0] if more else {})
            try:
                results[i] = run(bundle, cid, **kw)
            except ContainerError as e:
                results[i] = e
            except BaseException as e:  # a bug, or KeyboardInterrupt: stop taking jobs
                with lock:
                    bugs.append(e)
                return

    threads = [threading.Thread(target=work, name=f"libcontainer-run-{n}")
               for n in range(min(workers, len(todo)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_cleanup()
    if bugs:
        raise bugs[0]
    return results
