"""The engine: container records and their state machine (created → running ⇄ paused →
exited, restarting, removing), over libcontainer and its images library. Every method here
may block (a thread's work); the API layer calls them off its event loop. State changes are
announced through `on_change(cid)` (the API layer wakes its waiters) and events."""
from __future__ import annotations

import os
import shutil
import signal
import threading

from ..state import crash_point
from . import monitor, oci
from .errors import BadRequest, Conflict, EngineError, NotFound, NotModified, bad_input
from .events import Events
from .records import (ZERO_TIME, check_name, new_id, now, random_name, read_json, write_json)

SIGNALS = {n[3:]: int(getattr(signal, n)) for n in dir(signal)
           if n.startswith("SIG") and not n.startswith("SIG_") and isinstance(getattr(signal, n), int)}


def parse_signal(sig) -> int:
    if isinstance(sig, int) or str(sig).isdigit():
        n = int(sig)
    else:
        s = str(sig).upper()
        n = SIGNALS.get(s[3:] if s.startswith("SIG") else s, 0)
    if not 0 < n < 65:
        raise BadRequest(f"Invalid signal: {sig}")
    return n


def short_image_name(name: str) -> str:
    for p in ("docker.io/library/", "docker.io/"):
        if name.startswith(p):
            return name[len(p):]
    return name


# the OCI runtimes a container may name (HostConfig.Runtime): ours, also under runc's name,
# whose command line and behaviour it follows (compose files and clients that ask for runc)
RUNTIMES = ("runner", "runc")

class Engine:
    def __init__(self, data_root: str, exec_root: str = ""):
        self.root = os.path.abspath(data_root)
        self.cdir = os.path.join(self.root, "containers")
        self.runtime_root = exec_root or os.path.join(self.root, "runtime")
        for d in (self.cdir, self.runtime_root, os.path.join(self.root, "image")):
            os.makedirs(d, mode=0o711, exist_ok=True)
        from ..images.store import Store

        self.store = Store(os.path.join(self.root, "image"))
        self.rootless = os.geteuid() != 0
        self.events = Events()
        self.lock = threading.RLock()
        self._cleanup_locks: dict = {}  # container id → its runtime cleanup lock
        # container id → held for the whole of a start: a remove (rm -f) that finds one in
        # flight waits for it, then kills what it started, as dockerd's container lock does
        self._start_locks: dict = {}
        self.containers: dict = {}
        self.names: dict = {}
        self.on_change = lambda cid: None
        self.on_running = lambda cid, pid, monitor_pid: None  # the API watches the monitor
        self.schedule = lambda delay, fn: threading.Timer(delay, fn).start()
        from .volumes import Volumes
        from .networks import Networks

        self.volumes = Volumes(os.path.join(self.root, "volumes"))
        self.networks = Networks(os.path.join(self.root, "network"), self.rootless)
        self.execs: dict = {}

    # ---- records -----------------------------------------------------------------------

    def _dir(self, cid: str) -> str:
        return os.path.join(self.cdir, cid)

    def save(self, rec: dict, sync: bool = True) -> None:
        write_json(os.path.join(self._dir(rec["Id"]), "config.v2.json"), rec, sync)

    def get(self, ref: str) -> dict:
        """A container by id, id prefix or name (docker's lookup order)."""
        with self.lock:
            if ref in self.containers:
                return self.containers[ref]
            name = ref.lstrip("/")
            if name in self.names:
                return self.containers[self.names[name]]
            hits = [c for i, c in self.containers.items() if i.startswith(ref)] if ref else []
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise BadRequest(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def load(self) -> None:
        """Adopt what the last daemon left: records, live monitors, exits that happened while
        no daemon ran; half-made containers (no record) and half-removed ones (renamed
        away, record and all) are removed."""
        from ..state import sweep

        sweep(self.runtime_root)  # what a killed create or delete of the runtime left
        if os.path.isdir(self.store.path("builds")):
            from ..images.builder.workspace import sweep as sweep_builds

            sweep_builds(self.store)  # a killed build's workspace: its overlay mounts, its runs
        for cid in os.listdir(self.cdir):
            d = self._dir(cid)
            rec = read_json(os.path.join(d, "config.v2.json"))
            if not rec or rec.get("Id") != cid:
                self._remove_leftover(cid)
                continue
            self.containers[cid] = rec
            self.names[rec["Name"].lstrip("/")] = cid
            for m in rec.get("Mounts") or []:
                if m["Type"] == "volume":
                    self.volumes.users.setdefault(m["Name"], set()).add(cid)
        for cid, rec in list(self.containers.items()):
            st = rec["State"]
            if st["Status"] not in ("running", "paused") and monitor.orphan(self._dir(cid)):
                self._end_orphan(cid)
            if st["Status"] in ("running", "paused", "restarting"):
                mon = rec.get("Monitor") or {}
                if monitor.alive(mon.get("pid", 0), mon.get("start")):
                    self.networks.after_start(rec)
                    self.on_running(cid, st["Pid"], mon["pid"])
                    if st.get("Health") is not None:
                        from .health import watch

                        watch(self, cid)
                else:
                    self.exited(cid)
            elif st["Status"] == "removing" or rec["HostConfig"].get("AutoRemove"):
                # as dockerd's restore: a --rm container that is not running goes
                self.remove(cid, force=True)

    def _end_orphan(self, cid: str) -> None:
        """A start the last daemon did not live to record: its container goes (the client
        saw the start fail) and its monitor with it."""
        mon = monitor.orphan(self._dir(cid)) or {}
        try:
            self._cleanup_runtime(cid)
        except Exception as e:
            import logging

            logging.getLogger("runner.daemon").warning("orphan of %s: %s", cid[:12], e)
        monitor.wait_gone(mon.get("pid", 0), mon.get("start"), 10)
        try:
            os.unlink(os.path.join(self._dir(cid), monitor.MONITOR_FILE))
        except FileNotFoundError:
            pass

    def _remove_leftover(self, cid: str) -> None:
        d = self._dir(cid)
        bundle = os.path.join(d, "bundle")
        try:
            from ..images import remove_bundle

            remove_bundle(bundle, storage=self.store.root)
        except Exception:
            pass
        shutil.rmtree(d, ignore_errors=True)

    def list(self) -> list:
        with self.lock:
            return list(self.containers.values())

    # ---- create ------------------------------------------------------------------------

    def create(self, body: dict, name: str = "") -> dict:
        if not isinstance(body, dict):
            raise BadRequest("the request body is not a JSON object")
        image = body.get("Image")
        if not image or not isinstance(image, str):
            raise BadRequest("Config.Image: no image given")
        hc = body.get("HostConfig") or {}
        if not isinstance(hc, dict):
            raise BadRequest("HostConfig: want an object")
        from ..images.errors import ImageNotFound, ImageError

        try:
            img = self.store.get(image)
        except ImageNotFound:
            raise NotFound(f"No such image: {image}") from None
        except ImageError as e:
            raise BadRequest(str(e)) from None
        image_config = self.store.config(img)
        ep, cmd = oci.command(body, image_config)
        rp = hc.get("RestartPolicy") or {}
        if rp.get("Name") not in (None, "", "no", "always", "unless-stopped", "on-failure"):
            raise BadRequest(f"invalid restart policy {rp.get('Name')!r}")
        if hc.get("AutoRemove") and rp.get("Name") not in (None, "", "no"):
            raise BadRequest("can't create 'AutoRemove' container with restart policy")
        mounts = oci.mounts_of(body, hc)
        log_cfg = (hc.get("LogConfig") or {})
        if log_cfg.get("Type") not in (None, "", "json-file", "none"):
            # dockerd 20.10's words: a driver it does not know is looked for among plugins
            raise BadRequest(f"error looking up logging plugin {log_cfg['Type']}: plugin "
                             f"\"{log_cfg['Type']}\" not found")
        _size_opt((log_cfg.get("Config") or {}).get("max-size", ""))
        netmode = hc.get("NetworkMode") or "default"
        self.networks.check_mode(netmode)
        if hc.get("Runtime") and hc["Runtime"] not in RUNTIMES:
            raise BadRequest(f"Unknown runtime specified {hc['Runtime']}")
        cid = new_id()
        name = check_name(name) if name else ""
        with self.lock:
            if not name:
                name = random_name()
                while name in self.names:
                    name = random_name()
            if name in self.names:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                               f'container "{self.names[name]}". You have to remove (or rename) '
                               f'that container to be able to reuse that name.')
            self.names[name] = cid  # reserved: a second create of this name gets 409
        d = self._dir(cid)
        try:
            os.makedirs(d, mode=0o711)
            crash_point("container dir made")
            rec = self._make(cid, name, d, body, hc, img, image_config, ep, cmd, mounts, netmode)
        except BaseException:
            with self.lock:
                self.names.pop(name, None)
            self._remove_leftover(cid)
            raise
        with self.lock:
            self.containers[cid] = rec
        self.events.emit("container", "create", cid, {"name": name, "image": image})
        return rec

    def _make(self, cid, name, d, body, hc, img, image_config, ep, cmd, mounts, netmode) -> dict:
        from ..images.bundle import create as make_bundle
        from .. import jsonio

        bundle = os.path.join(d, "bundle")
        env = [e for e in body.get("Env") or [] if isinstance(e, str)]
        # dockerd: a bare NAME unsets NAME in the process (the image's too), stays in Config.Env
        unset = [e for e in env if "=" not in e]
        env = [e for e in env if "=" in e]
        with bad_input("ConfigError"):
            spec = make_bundle(img.id, bundle, storage=self.store.root, args=cmd,
                               entrypoint=ep, env=env, user=body.get("User") or None,
                               cwd=body.get("WorkingDir") or None, terminal=bool(body.get("Tty")))
        if unset:
            spec["process"]["env"] = [e for e in spec["process"]["env"]
                                      if e.partition("=")[0] not in unset]
        crash_point("bundle made")
        hostname = body.get("Hostname") or cid[:12]
        config_env = spec["process"]["env"] + unset
        if not any(e.startswith("HOSTNAME=") for e in spec["process"]["env"]):
            # dockerd's process environment: PATH, HOSTNAME, then the config's
            at = 1 if spec["process"]["env"][:1] and spec["process"]["env"][0].startswith("PATH=") else 0
            spec["process"]["env"].insert(at, f"HOSTNAME={hostname}")
        etc = self._etc_files(d, hostname, body, hc)
        resolved = self.volumes.resolve(mounts, os.path.join(bundle, "rootfs"))
        oci_mounts = []
        for m in resolved:
            if m["Type"] == "tmpfs":
                opts = ["nosuid", "nodev", "noexec"] + list(m.get("Options") or [])
                oci_mounts.append({"destination": m["Target"], "type": "tmpfs", "source": "tmpfs",
                                   "options": opts + (["ro"] if m["ReadOnly"] else [])})
            else:
                oci_mounts.append({"destination": m["Target"], "type": "bind", "source": m["Source"],
                                   "options": ["rbind", "ro" if m["ReadOnly"] else "rw"] +
                                   ([m["Propagation"]] if m.get("Propagation") else [])})
        body = dict(body, Hostname=hostname)
        oci.apply(spec, cid, body, hc, oci_mounts, etc, self.rootless)
        self.networks.configure(spec, cid, name, netmode, hc, body)
        if hc.get("Init"):
            init = init_binary()
            spec["mounts"].append({"destination": "/sbin/docker-init", "type": "bind",
                                   "source": init, "options": ["rbind", "ro"]})
            spec["process"]["args"] = ["/sbin/docker-init", "--"] + spec["process"]["args"]
        for m in resolved:
            if m["Type"] == "volume":
                self.volumes.users.setdefault(m["Name"], set()).add(cid)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(jsonio.dumps(spec, indent=1))
        crash_point("config.json written")
        ic = image_config.get("config") or {}
        config = {"Hostname": hostname, "Domainname": body.get("Domainname", ""),
                  "User": body.get("User", ""), "AttachStdin": bool(body.get("AttachStdin")),
                  "AttachStdout": bool(body.get("AttachStdout")),
                  "AttachStderr": bool(body.get("AttachStderr")),
                  "ExposedPorts": body.get("ExposedPorts") or ic.get("ExposedPorts"),
                  "Tty": bool(body.get("Tty")), "OpenStdin": bool(body.get("OpenStdin")),
                  "StdinOnce": bool(body.get("StdinOnce")), "Env": config_env,
                  "Cmd": cmd, "Healthcheck": body.get("Healthcheck") or ic.get("Healthcheck"),
                  "Image": body["Image"], "Volumes": body.get("Volumes"),
                  "WorkingDir": body.get("WorkingDir") or ic.get("WorkingDir", ""),
                  "Entrypoint": ep or None, "OnBuild": None,
                  "Labels": dict(ic.get("Labels") or {}, **(body.get("Labels") or {})),
                  "StopSignal": body.get("StopSignal") or ic.get("StopSignal"),
                  "StopTimeout": body.get("StopTimeout")}
        hc_out = dict(hc)
        hc_out.setdefault("NetworkMode", netmode)
        hc_out["Runtime"] = hc.get("Runtime") or "runner"
        hc_out.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        hc_out.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        if not hc_out["LogConfig"].get("Type"):
            hc_out["LogConfig"] = {"Type": "json-file", "Config": hc_out["LogConfig"].get("Config") or {}}
        args = ep + cmd
        rec = {"Id": cid, "Created": now(), "Path": args[0], "Args": args[1:],
               "State": {"Status": "created", "Running": False, "Paused": False,
                         "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                         "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME,
                         "FinishedAt": ZERO_TIME},
               "Image": "sha256:" + img.id, "ResolvConfPath": etc_path(d, "resolv.conf"),
               "HostnamePath": etc_path(d, "hostname"), "HostsPath": etc_path(d, "hosts"),
               "LogPath": os.path.join(d, "json.log"), "Name": "/" + name, "RestartCount": 0,
               "Driver": "overlay2", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
               "AppArmorProfile": "", "ExecIDs": None, "HostConfig": hc_out,
               "Mounts": [{"Type": m["Type"], "Name": m.get("Name", ""), "Source": m["Source"],
                           "Anonymous": m["Type"] == "volume" and not m.get("Named"),
                           "Destination": m["Target"], "Driver": "local" if m["Type"] == "volume" else "",
                           "Mode": "", "RW": not m["ReadOnly"],
                           # dockerd shows a bind's default propagation
                           "Propagation": m.get("Propagation") or ("rprivate" if m["Type"] == "bind" else "")}
                          for m in resolved if m["Type"] != "tmpfs"],
               "Config": config, "NetworkSettings": self.networks.settings(cid, netmode, body),
               "GraphDriver": {"Name": "overlay2", "Data": {}}}
        if config["Healthcheck"] and (config["Healthcheck"].get("Test") or [""])[0] not in ("NONE",):
            rec["State"]["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self.save(rec)
        crash_point("container recorded")
        return rec

    def _etc_files(self, d: str, hostname: str, body: dict, hc: dict) -> list:
        """/etc/hostname, /etc/hosts and /etc/resolv.conf of the container, bind mounted
        from its directory as dockerd does (so the network layer can rewrite hosts)."""
        with open(etc_path(d, "hostname"), "w") as f:
            f.write(hostname + "\n")
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for h in hc.get("ExtraHosts") or []:
            n, _, ip = h.partition(":")
            hosts.append(f"{ip}\t{n}")
        with open(etc_path(d, "hosts"), "w") as f:
            f.write("\n".join(hosts) + "\n")
        try:
            with open("/etc/resolv.conf") as f:
                resolv = [ln for ln in f.read().splitlines() if not ln.startswith("nameserver 127.")]
        except OSError:
            resolv = []
        if hc.get("Dns"):
            resolv = [ln for ln in resolv if not ln.startswith("nameserver")]
            resolv += [f"nameserver {s}" for s in hc["Dns"]]
        with open(etc_path(d, "resolv.conf"), "w") as f:
            f.write("\n".join(resolv) + "\n")
        return [{"destination": f"/etc/{n}", "type": "bind", "source": etc_path(d, n),
                 "options": ["rbind", "rprivate"]} for n in ("hostname", "hosts", "resolv.conf")]

    # ---- start / exit ------------------------------------------------------------------

    def start(self, ref: str, hold: bool = False) -> dict:
        rec = self.get(ref)
        cid = rec["Id"]
        with self.lock:
            st = rec["State"]
            if st["Status"] in ("running", "paused"):
                raise NotModified("container already started")
            if st["Status"] in ("removing", "dead"):
                raise Conflict(f"container {cid[:12]} is marked for removal and cannot be started")
            st["Status"] = "starting"  # not docker's, never saved: a second start is 304
            slock = self._start_locks.setdefault(cid, threading.RLock())
        with slock:
            return self._start(rec, cid, hold)

    def _start(self, rec: dict, cid: str, hold: bool) -> dict:
        try:
            self._cleanup_runtime(cid)
            d = self._dir(cid)
            lc = (rec["HostConfig"].get("LogConfig") or {}).get("Config") or {}
            max_size = _size_opt(lc.get("max-size", ""))
            max_file = int(lc.get("max-file") or 1)
            self.networks.before_start(rec)
            info = monitor.spawn(d, os.path.join(d, "bundle"), cid, self.runtime_root,
                                 rec["Config"]["Tty"], rec["Config"]["OpenStdin"], max_size,
                                 max_file, hold)
            crash_point("started, not recorded")
        except BaseException as e:
            with self.lock:
                removing = rec["State"]["Status"] == "removing"
                if not removing:
                    rec["State"]["Status"] = "created" if rec["State"]["StartedAt"] == ZERO_TIME \
                        else "exited"
            self.on_change(cid)
            if removing:  # a remove waits for this start: the record is its own now
                raise Conflict(f"container {cid[:12]} was removed while it started") from None
            if isinstance(e, EngineError):
                msg = str(e)
                rec["State"]["Error"] = msg
                self.save(rec)
                if rec["HostConfig"].get("AutoRemove"):
                    # dockerd: a start that fails removes an auto-remove container too
                    try:
                        self.remove(cid, force=True, volumes=True)
                    except EngineError:
                        pass
                raise BadRequest(msg) if "executable file not found" in msg or "no such file" in msg.lower() \
                    else EngineError(msg) from None
            raise
        with self.lock:
            st = rec["State"]
            removing = st["Status"] == "removing"  # the remove waiting for us kills it next
            st.update(Status="removing" if removing else "running", Running=True, Paused=False,
                      Restarting=False, Pid=info["pid"], ExitCode=0, Error="", StartedAt=now(),
                      FinishedAt=ZERO_TIME, OOMKilled=False)
            rec["Monitor"] = {"pid": info["monitor"], "start": info["monitor_start"]}
            rec.pop("_stopping", None)
            # not synced: a daemon crash keeps it (page cache); a power cut ends the container
            # anyway, and then an unsynced start reads back as the state before it
            self.save(rec, sync=False)
        crash_point("start recorded")
        self.networks.after_start(rec)
        if rec["State"].get("Health") is not None:
            rec["State"]["Health"].update(Status="starting", FailingStreak=0)
            from .health import watch

            watch(self, cid)
        self.events.emit("container", "start", cid, self._attrs(rec))
        self.on_running(cid, info["pid"], info["monitor"])
        self.on_change(cid)
        return rec

    def _attrs(self, rec: dict) -> dict:
        return dict(rec["Config"].get("Labels") or {}, name=rec["Name"].lstrip("/"),
                    image=rec["Config"]["Image"])

    def _cleanup_runtime(self, cid: str) -> None:
        """The runtime's record of an earlier run (stopped) goes before a new start. One at a
        time per container: a remove racing the exit's cleanup waits for its poststop hooks
        (the network's DEL), which must run before the network may go."""
        import libcontainer

        with self.lock:
            lock = self._cleanup_locks.setdefault(cid, threading.Lock())
        with lock:
            try:
                libcontainer.load(cid, self.runtime_root).delete(force=True)
            except libcontainer.NotFound:
                pass

    def _oom_killed(self, cid: str) -> bool:
        """The kernel's OOM count of the container's cgroup, before it goes."""
        for path in (f"/sys/fs/cgroup/memory/runner-daemon/{cid}/memory.oom_control",
                     f"/sys/fs/cgroup/runner-daemon/{cid}/memory.events"):
            try:
                with open(path) as f:
                    for line in f:
                        k, _, v = line.partition(" ")
                        if k == "oom_kill" and int(v) > 0:
                            return True
            except OSError:
                continue
        return False

    def exited(self, cid: str) -> None:
        """The monitor is gone: record the exit, clean the runtime, apply the restart policy
        or --rm."""
        with self.lock:
            rec = self.containers.get(cid)
            if rec is None or rec["State"]["Status"] not in ("running", "paused", "restarting"):
                return
        d = self._dir(cid)
        ex = monitor.read_exit(d) or {"ExitCode": 255, "FinishedAt": now()}
        oom = self._oom_killed(cid)
        crash_point("exit read")
        try:
            self._cleanup_runtime(cid)
        except Exception as e:
            import logging

            logging.getLogger("runner.daemon").warning("cleanup of %s: %s", cid[:12], e)
        with self.lock:
            if self.containers.get(cid) is not rec or rec["State"]["Status"] == "removing":
                return  # a remove (rm -f) took it meanwhile: its network and record are its own
        self.networks.after_stop(rec)
        with self.lock:
            if self.containers.get(cid) is not rec or rec["State"]["Status"] == "removing":
                return
            st = rec["State"]
            st.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0,
                      ExitCode=ex["ExitCode"], FinishedAt=ex["FinishedAt"], OOMKilled=oom)
            if "Health" in st:
                st["Health"]["Status"] = "unhealthy"
            rec.pop("Monitor", None)
            stopping = rec.pop("_stopping", False)
            # a --rm container is removed next (a crash before that: load() removes it)
            self.save(rec, sync=not rec["HostConfig"].get("AutoRemove"))
        crash_point("exit recorded")
        if oom:
            self.events.emit("container", "oom", cid, self._attrs(rec))
        self.events.emit("container", "die", cid, dict(self._attrs(rec), exitCode=str(ex["ExitCode"])))
        self.on_change(cid)
        hc = rec["HostConfig"]
        if hc.get("AutoRemove"):
            try:
                self.remove(cid, force=True)
            except EngineError:
                pass
            return
        rp = hc.get("RestartPolicy") or {}
        policy = rp.get("Name") or "no"
        again = not stopping and (
            policy == "always" or policy == "unless-stopped" or
            (policy == "on-failure" and ex["ExitCode"] != 0 and
             (not rp.get("MaximumRetryCount") or rec["RestartCount"] < rp["MaximumRetryCount"])))
        if again:
            delay = min(0.1 * (2 ** rec["RestartCount"]), 60.0)
            with self.lock:
                rec["State"]["Restarting"] = True
                rec["State"]["Status"] = "restarting"
                self.save(rec)

            def go():
                with self.lock:
                    if rec["State"]["Status"] != "restarting" or cid not in self.containers:
                        return
                    rec["RestartCount"] += 1
                    rec["State"]["Status"] = "exited"
                try:
                    self.start(cid)
                except EngineError:
                    pass  # recorded in State.Error, or a remove took the container
            self.schedule(delay, go)

    # ---- signals -----------------------------------------------------------------------

    def kill(self, ref: str, sig=signal.SIGKILL) -> None:
        rec = self.get(ref)
        n = parse_signal(sig)
        if rec["State"]["Status"] not in ("running", "paused"):
            raise Conflict(f"Cannot kill container: {ref}: Container {rec['Id']} is not running")
        self._signal(rec, n)
        self.events.emit("container", "kill", rec["Id"], dict(self._attrs(rec), signal=str(n)))

    def _signal(self, rec: dict, n: int) -> None:
        import libcontainer

        try:
            c = libcontainer.load(rec["Id"], self.runtime_root)
            if n == signal.SIGKILL and rec["State"]["Paused"]:
                c.kill(n, all=True)
            else:
                c.kill(n)
        except libcontainer.ContainerError as e:
            if rec["State"]["Pid"]:
                try:
                    os.kill(rec["State"]["Pid"], n)
                    return
                except ProcessLookupError:
                    pass
            raise Conflict(str(e)) from None

    def mark_stopping(self, rec: dict) -> None:
        with self.lock:
            rec["_stopping"] = True
            if rec["State"]["Status"] == "restarting":
                rec["State"].update(Status="exited", Restarting=False)
                self.save(rec)
                self.on_change(rec["Id"])

    def stop_signal(self, rec: dict) -> int:
        return parse_signal(rec["Config"].get("StopSignal") or "SIGTERM")

    def pause(self, ref: str) -> None:
        import libcontainer

        rec = self.get(ref)
        if rec["State"]["Status"] != "running":
            raise Conflict(f"Container {rec['Id']} is not running")
        try:
            libcontainer.load(rec["Id"], self.runtime_root).pause()
        except libcontainer.ContainerError as e:
            raise EngineError(str(e)) from None
        with self.lock:
            rec["State"].update(Status="paused", Paused=True)
            self.save(rec)
        self.events.emit("container", "pause", rec["Id"], self._attrs(rec))

    def unpause(self, ref: str) -> None:
        import libcontainer

        rec = self.get(ref)
        if rec["State"]["Status"] != "paused":
            raise Conflict(f"Container {rec['Id']} is not paused")
        try:
            libcontainer.load(rec["Id"], self.runtime_root).resume()
        except libcontainer.ContainerError as e:
            raise EngineError(str(e)) from None
        with self.lock:
            rec["State"].update(Status="running", Paused=False)
            self.save(rec)
        self.events.emit("container", "unpause", rec["Id"], self._attrs(rec))

    def top(self, ref: str) -> list:
        import libcontainer

        rec = self.get(ref)
        if rec["State"]["Status"] not in ("running", "paused"):
            raise Conflict(f"Container {rec['Id']} is not running")
        return libcontainer.load(rec["Id"], self.runtime_root).processes()

    def rename(self, ref: str, new: str) -> None:
        rec = self.get(ref)
        new = check_name(new)
        with self.lock:
            if new in self.names:
                raise Conflict(f'Error when allocating new name: Conflict. The container name '
                               f'"/{new}" is already in use by container "{self.names[new]}". '
                               'You have to remove (or rename) that container to be able to '
                               'reuse that name.')
            old = rec["Name"].lstrip("/")
            del self.names[old]
            self.names[new] = rec["Id"]
            rec["Name"] = "/" + new
            self.save(rec)
        self.events.emit("container", "rename", rec["Id"], dict(self._attrs(rec), oldName="/" + old))

    # ---- remove ------------------------------------------------------------------------

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        rec = self.get(ref)
        cid = rec["Id"]
        with self.lock:
            status = rec["State"]["Status"]
            if status in ("running", "paused", "restarting", "starting") and not force:
                raise Conflict(f"You cannot remove a {status} container {cid}. Stop the "
                               "container before attempting removal or force remove")
            if status == "removing" and not force:
                raise Conflict(f"removal of container {cid} is already in progress")
            rec["State"]["Status"] = "removing"
            rec["_stopping"] = True
            # lost only at a power cut: then the next start finds the container as it was
            # and a half-removed bundle, which a later remove tolerates
            self.save(rec, sync=False)
            slock = self._start_locks.get(cid)
        crash_point("removal recorded")
        if status == "starting" and slock is not None:
            with slock:  # the start in flight ends first: running now, or failed
                started = rec.get("Monitor") is not None
            if started:
                status = "running"
        if status in ("running", "paused"):
            mon = rec.get("Monitor") or {}
            try:
                self._signal(rec, signal.SIGKILL)
            except EngineError:
                pass
            monitor.wait_gone(mon.get("pid", 0), mon.get("start"), 10)
            crash_point("removal: killed")
        self._cleanup_runtime(cid)
        crash_point("removal: runtime cleaned")
        self.networks.after_stop(rec)
        self.networks.forget(rec)
        d = self._dir(cid)
        from ..images import remove_bundle
        from ..images.errors import ImageError

        try:
            remove_bundle(os.path.join(d, "bundle"), storage=self.store.root)
        except ImageError:
            pass
        crash_point("removal: bundle removed")
        for m in rec.get("Mounts") or []:
            if m["Type"] == "volume":
                self.volumes.users.get(m["Name"], set()).discard(cid)
        if volumes:
            for m in rec.get("Mounts") or []:
                if m["Type"] == "volume" and m.get("Anonymous"):
                    self.volumes.remove(m["Name"], force=True)
        # its files go after the answer: renamed away first (a record-less directory, which
        # the next start's load() removes if this daemon dies before it did)
        gone = os.path.join(self.cdir, ".gone-" + cid)
        try:
            os.rename(d, gone)
            crash_point("removal: renamed away")
            self.schedule(0, lambda: shutil.rmtree(gone, ignore_errors=True))
        except OSError:
            shutil.rmtree(d, ignore_errors=True)
        with self.lock:
            self.containers.pop(cid, None)
            self.names.pop(rec["Name"].lstrip("/"), None)
            self._cleanup_locks.pop(cid, None)
            self._start_locks.pop(cid, None)
            rec["State"]["Status"] = "removed"
        self.events.emit("container", "destroy", cid, self._attrs(rec))
        self.on_change(cid)


INIT_BINARIES = ("/usr/bin/tini-static", "/usr/libexec/podman/catatonit", "/usr/bin/catatonit",
                 "/usr/bin/docker-init", "/usr/sbin/docker-init")


def init_binary() -> str:
    """docker-init: a static tini (or catatonit), bound into the container as dockerd does."""
    for p in INIT_BINARIES:
        if os.access(p, os.X_OK):
            return p
    raise BadRequest("--init: no init binary (install tini or catatonit)")


def etc_path(d: str, name: str) -> str:
    return os.path.join(d, name)


def _size_opt(text: str) -> int:
    """docker's max-size: 10k, 5m, 1g (bytes, 0 = no rotation)."""
    if not text:
        return 0
    t = str(text).strip().lower()
    mult = {"k": 1024, "m": 1024**2, "g": 1024**3}
    try:
        if t[-1] in mult:
            return int(float(t[:-1]) * mult[t[-1]])
        if t.endswith("b"):
            return int(t[:-1])
        return int(t)
    except (ValueError, IndexError):
        raise BadRequest(f"HostConfig.LogConfig.Config: max-size {text!r}: invalid size") from None
