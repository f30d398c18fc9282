"""The engine below `runner daemon`: container records and their state machine, the
per-container monitor (csrc/monitor.c) that outlives the daemon, restart policies, health
checks, json-file logs, events, volumes and networks — over libcontainer, its images and its
network library only (never the runner CLI). Nothing in `import libcontainer` or `runner
run` loads it.

    from libcontainer.engine.daemon import Engine
    eng = Engine("/var/lib/runner-daemon")
    cid = eng.create({"Image": "busybox", "Cmd": ["true"]}, name="x")
    eng.start(cid); eng.wait(cid)

The HTTP side (the Docker Engine API) is engine.api, which alone imports aiohttp."""
