"""Building the stages of a Dockerfile: FROM (an image of the store, scratch, an earlier
stage), ARG scoping, the metadata instructions (metadata.py), and the steps that make a
layer — RUN (run.py), COPY and ADD (copy.py) — each on an overlay of the layers so far
whose upper dir becomes the new layer. Every instruction is a link of the cache chain."""
from __future__ import annotations

import copy as copymod
import json
import os
import platform
import time

from . import cache as cachemod
from . import lex, metadata
from .context import digest, has_wildcard, resolve_in, sources
from .copy import Target, copy
from .dockerfile import BuildError, Instruction, parse

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAYER_STEPS = {"RUN", "COPY", "ADD"}
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


def arch() -> str:
    return _ARCH.get(platform.machine(), platform.machine())


def rfc3339(t: float) -> str:
    secs = int(t)
    frac = int(round((t - secs) * 1e9))
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return base + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def automatic_args() -> dict:
    a = arch()
    return {"TARGETPLATFORM": f"linux/{a}", "TARGETOS": "linux", "TARGETARCH": a,
            "TARGETVARIANT": "", "BUILDPLATFORM": f"linux/{a}", "BUILDOS": "linux",
            "BUILDARCH": a, "BUILDVARIANT": ""}


class Result:
    """A finished stage: its layers, image config and the last cache key."""

    def __init__(self, layers: list, image: dict, key: str):
        self.layers, self.image, self.key = layers, image, key


class Stage:
    def __init__(self, b, index: int, name: str, instructions: list):
        self.b, self.index, self.name, self.instructions = b, index, name, instructions
        self.layers: list = []
        self.image: dict = {}
        self.config: dict = {}
        self.history: list = []
        self.args: dict = {}
        self.state = {"shell": list(metadata.DEFAULT_SHELL), "cmd_set": False}
        self.key = ""
        self.workdir_pending = False
        self.last_cmd = "FROM"
        self.single = None  # --layers=false: the one mount all steps of the stage write to

    # ---- helpers ----------------------------------------------------------------------

    def env(self) -> dict:
        """What substitution sees: the ARGs in scope, then ENV (which wins)."""
        out = dict(self.args)
        out.update(metadata.env_dict(self.config))
        return out

    def created(self, rec: dict | None) -> str:
        if rec and rec.get("created"):
            return rec["created"]
        return rfc3339(self.b.timestamp if self.b.timestamp is not None else time.time())

    def add_history(self, created_by: str, created: str, empty: bool) -> None:
        h = {"created": created, "created_by": created_by}
        if empty:
            h["empty_layer"] = True
        self.history.append(h)

    # ---- FROM -------------------------------------------------------------------------

    def start(self, ins: Instruction) -> None:
        b = self.b
        b.tell(ins, self)
        try:
            words = lex.words(ins.args, b.global_args, b.df.escape)
        except lex.LexError as e:
            raise ins.error(str(e)) from None
        for flag in ins.flags:
            if flag != "platform":
                raise ins.error(f"unknown flag --{flag}")
        if len(words) == 3 and words[1].lower() == "as":
            words = words[:1]
        if len(words) != 1:
            raise ins.error("want FROM IMAGE [AS NAME]")
        base = words[0]
        if base.lower() == "scratch":
            self.image = {"architecture": arch(), "os": "linux"}
            self.key = cachemod.key("FROM scratch", str(b.timestamp))
        elif b.stage_names.get(base.lower(), self.index) < self.index or \
                (base.isdigit() and int(base) < self.index):
            res = b.stage_result(b.stage_names.get(base.lower(), int(base) if base.isdigit() else -1), ins)
            self.image = copymod.deepcopy(res.image)
            self.layers = list(res.layers)
            self.key = cachemod.key("FROM stage", res.key)
        else:
            try:
                img = b.store.get(base)
            except Exception as e:
                raise ins.error(f"{base}: {e}") from None
            self.image = b.store.config(img)
            self.layers = list(img.layers)
            self.key = cachemod.key("FROM", img.id, str(b.timestamp))
        self.config = copymod.deepcopy(self.image.get("config") or {})
        self.history = list(self.image.get("history") or [])
        if not self.config.get("Env"):
            self.config["Env"] = [DEFAULT_PATH]
        triggers = self.config.pop("OnBuild", None) or []
        if triggers:
            df = parse("\n".join(triggers).encode(), f"{ins.file}:{ins.line} (ONBUILD of {base})")
            for t in df.instructions:
                if t.cmd in metadata.ONBUILD_FORBIDDEN:
                    raise t.error("is not allowed as an ONBUILD trigger")
                self.step(t)

    # ---- instructions -------------------------------------------------------------------

    def run(self) -> Result:
        self.start(self.instructions[0])
        body = self.instructions[1:]
        for n, ins in enumerate(body):
            self.step(ins, last=(n == len(body) - 1))
        if not self.b.layers:
            self.commit_single()
        image = dict(self.image)
        image.pop("config", None)
        image.pop("rootfs", None)
        image.pop("history", None)
        out = {"created": self.history[-1]["created"] if self.history else self.created(None)}
        for k in ("architecture", "os", "variant", "os.version", "os.features"):
            if k in image:
                out[k] = image[k]
        if self.state.get("author") or image.get("author"):
            out["author"] = self.state.get("author") or image.get("author")
        out["config"] = metadata.clean(self.config)
        out["rootfs"] = {"type": "layers", "diff_ids": list(self.layers)}
        out["history"] = self.history
        return Result(list(self.layers), out, self.key)

    def step(self, ins: Instruction, last: bool = False) -> None:
        b = self.b
        b.tell(ins, self)
        escape = b.df.escape
        extra = ""
        if ins.cmd == "FROM":
            raise ins.error("FROM inside a stage")  # cannot happen: stages split at FROM
        if ins.cmd == "ARG":
            extra = self.arg(ins)
        elif ins.cmd in ("COPY", "ADD"):
            plan = self.plan_copy(ins)
            extra = plan["digest"]
        elif ins.cmd == "RUN":
            plan = self.plan_run(ins)
            extra = json.dumps(plan["env"]) + plan["network"]
        text = ins.original + "".join(f"\n{h.body}{h.name}" for h in ins.heredocs)
        self.key = cachemod.key(self.key, text, extra)
        rec = b.cache.get(self.key)
        created_by = self.created_by(ins)
        pending = self.workdir_pending  # a WORKDIR before this step: buildah makes it now
        self.last_cmd = ins.cmd
        if ins.cmd not in LAYER_STEPS and ins.cmd != "ARG":
            metadata.apply(ins, self.config, self.env(), escape, self.state)
            if ins.cmd == "WORKDIR":
                self.workdir_pending = True
        if not b.layers:  # buildah's default: one layer for the stage, made at its end
            if ins.cmd in LAYER_STEPS:
                if self.single is None:
                    self.single = b.ws.mount([b.store.layer_dir(d) for d in self.layers])
                self.in_mount(ins, plan, self.single.merged)
                self.workdir_pending = False
            self.add_history(created_by, self.created(None), empty=True)
            return
        if ins.cmd in LAYER_STEPS:
            if rec is not None and rec.get("layer"):
                b.note_cached(ins)
                layer = rec["layer"]
            else:
                layer = self.layer_step(ins, plan)
            self.layers.append(layer)
            self.workdir_pending = False
            created = self.created(rec)
            self.add_history(created_by, created, empty=False)
            b.cache.put(self.key, {"layer": layer, "created": created}, rec)
            return
        created = self.created(rec)
        self.add_history(created_by, created, empty=True)
        layer = None
        if last:
            if rec is not None:
                layer = rec.get("layer")
            elif pending:
                layer = self.finish_workdir(ins)
            if layer:
                self.layers.append(layer)
                self.history[-1].pop("empty_layer", None)
        b.cache.put(self.key, {"layer": layer, "created": created}, rec)

    def created_by(self, ins: Instruction) -> str:
        if ins.cmd == "RUN" and ins.json is None and not ins.heredocs:
            return " ".join(self.state["shell"]) + " " + ins.args
        return "/bin/sh -c #(nop) " + ins.original

    def arg(self, ins: Instruction) -> str:
        if ins.flags:
            raise ins.error(f"unknown flag --{next(iter(ins.flags))}")
        out = []
        for name, value in self.b.parse_args(ins, self.env()):
            if name in self.b.build_args:
                value = self.b.build_args[name]
                self.b.used_args.add(name)
            elif value is None and name in self.b.global_args:
                value = self.b.global_args[name]
            elif value is None and name in automatic_args():
                value = automatic_args()[name]
            if value is not None:
                self.args[name] = value
            out.append(f"{name}={value}" if value is not None else name)
        return " ".join(out)

    # ---- layer steps ------------------------------------------------------------------

    def in_mount(self, ins: Instruction, plan: dict, root: str) -> None:
        b = self.b
        self.ensure_workdir(root)
        if ins.cmd == "RUN":
            from .run import run

            run(b.ws.path, root, plan["argv"], plan["env"], self.config.get("WorkingDir") or "/",
                self.config.get("User") or "", plan["network"], b.output, ins)
        else:
            self.do_copy(ins, plan, root)

    def commit_single(self) -> None:
        """--layers=false: the stage's one new layer, on its last history entry (buildah's
        way); a WORKDIR after the last step is made in it too."""
        b = self.b
        if self.single is None:
            self.single = b.ws.mount([b.store.layer_dir(d) for d in self.layers])
        m, self.single = self.single, None
        try:
            if self.workdir_pending:  # buildah's one container made it at the WORKDIR
                self.ensure_workdir(m.merged)
            upper = m.take_upper()
        except BaseException:
            m.discard()
            raise
        self.layers.append(b.store.add_layer(upper, timestamp=b.timestamp))
        if self.history:
            self.history[-1].pop("empty_layer", None)

    def layer_step(self, ins: Instruction, plan: dict) -> str:
        b = self.b
        m = b.ws.mount([b.store.layer_dir(d) for d in self.layers])
        try:
            self.in_mount(ins, plan, m.merged)
            upper = m.take_upper()
        except BaseException:
            m.discard()
            raise
        return b.store.add_layer(upper, timestamp=b.timestamp)

    def ensure_workdir(self, root: str) -> None:
        wd = self.config.get("WorkingDir")
        if wd and wd != "/":
            Target(root, None, None).mkdirs(wd)

    def finish_workdir(self, ins) -> str | None:
        """A WORKDIR after the last layer step: its directory goes into a last layer, if it
        is not in the image yet (as buildah commits it)."""
        wd = self.config.get("WorkingDir")
        if not wd or wd == "/" or ins is None:
            return None
        m = self.b.ws.mount([self.b.store.layer_dir(d) for d in self.layers])
        try:
            if os.path.isdir(resolve_in(m.merged, wd)):
                m.discard()
                return None
            self.ensure_workdir(m.merged)
            upper = m.take_upper()
        except BaseException:
            m.discard()
            raise
        return self.b.store.add_layer(upper, timestamp=self.b.timestamp)

    def plan_run(self, ins: Instruction) -> dict:
        network = self.b.network
        for flag, value in ins.flags.items():
            if flag == "network":
                if value not in ("none", "host", "default"):
                    raise ins.error(f"--network: {value!r} is not none, host or default")
                network = self.b.network if value == "default" else value
            elif flag in ("mount", "security"):
                raise ins.error(f"RUN --{flag} is not supported")
            else:
                raise ins.error(f"unknown flag --{flag}")
        shell = self.state["shell"]
        if ins.heredocs:
            before = ins.args.split("<<", 1)[0].strip()
            if not before and len(ins.heredocs) == 1:
                argv = shell + [ins.heredocs[0].body]
            else:
                script = ins.args + "\n" + "".join(f"{h.body}{h.name}\n" for h in ins.heredocs)
                argv = shell + [script]
        else:
            argv = metadata.command(ins, shell)
        env = list(self.config.get("Env") or [])
        keys = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in sorted(self.args.items()) if k not in keys]
        return {"argv": argv, "env": env, "network": network}

    def plan_copy(self, ins: Instruction) -> dict:
        b = self.b
        allowed = {"from", "chown", "chmod", "link"} if ins.cmd == "COPY" else {"chown", "chmod", "link"}
        for flag in ins.flags:
            if flag not in allowed:
                raise ins.error(f"unknown flag --{flag}")
        env, escape = self.env(), b.df.escape
        try:
            if ins.json is not None:
                words = [lex.word(w, env, escape) for w in ins.json]
            else:
                words = lex.words(ins.args, env, escape)
        except lex.LexError as e:
            raise ins.error(str(e)) from None
        heredocs = {f"<<{h.name}": h for h in ins.heredocs}
        heredocs.update({f"<<-{h.name}": h for h in ins.heredocs})
        words = [w for w in words if w.strip("'\"") not in heredocs and
                 not any(w.startswith(f"<<{q}{h.name}") or w.startswith(f"<<-{q}{h.name}")
                         for h in ins.heredocs for q in ("'", '"'))]
        if len(words) + len(ins.heredocs) < 2:
            raise ins.error("requires at least two arguments: SOURCE… DEST")
        srcs, dest = words[:-1], words[-1]
        chmod = None
        if "chmod" in ins.flags:
            try:
                chmod = int(ins.flags["chmod"], 8)
                if not 0 <= chmod <= 0o7777:
                    raise ValueError
            except ValueError:
                raise ins.error(f"--chmod: {ins.flags['chmod']!r} is not an octal mode") from None
        plan = {"dest": dest, "chmod": chmod, "chown": ins.flags.get("chown"), "from": None,
                "srcs": srcs, "several": len(srcs) + len(ins.heredocs) > 1 or any(map(has_wildcard, srcs))}
        what = f"{ins.file}:{ins.line}: {ins.cmd}"
        if ins.cmd == "ADD":
            for s in srcs:
                if "://" in s or s.startswith("git@"):
                    raise ins.error(f"{s}: ADD of a URL is refused: the build has no network "
                                    "(download it into the context and COPY it)")
        if "from" in ins.flags:
            ref = lex.word(ins.flags["from"], env, escape)
            plan["from"] = ref
            lowers, key = b.from_source(ref, ins)
            plan["from_lowers"] = lowers
            plan["digest"] = cachemod.key(key, json.dumps(srcs))
            return plan
        found = sources(b.context, srcs, b.ignore, what)
        plan["found"] = found
        plan["digest"] = digest(b.context, found, b.ignore) + "".join(
            h.body for h in ins.heredocs) + json.dumps(env if ins.heredocs else {})
        return plan

    def do_copy(self, ins: Instruction, plan: dict, root: str) -> None:
        b = self.b
        chown = None
        if plan["chown"]:
            from ..bundle import resolve_user

            spec = lex.word(plan["chown"], self.env(), b.df.escape)
            user, _, group = spec.partition(":")
            try:
                u = resolve_user(root, spec)
            except Exception as e:
                raise ins.error(f"--chown: {e}") from None
            gid = u["gid"] if group else (u["uid"] if user.isdigit() else u["gid"])
            chown = (u["uid"], gid)
        target = Target(root, chown, plan["chmod"])
        what = f"{ins.file}:{ins.line}: {ins.cmd}"
        wd = self.config.get("WorkingDir") or "/"
        try:
            for h in ins.heredocs:
                body = h.body
                if h.expand:
                    body = _expand(body, self.env())
                path = plan["dest"] if not plan["several"] else plan["dest"].rstrip("/") + "/" + h.name
                if not path.startswith("/"):
                    path = os.path.join(wd, path)
                target.mkdirs(os.path.dirname(path))
                host = target.host(path)
                with open(host, "w") as f:
                    f.write(body)
                os.chown(host, *(chown or (0, 0)))
                os.chmod(host, plan["chmod"] if plan["chmod"] is not None else 0o644)
            if plan["from"] is not None:
                r = b.ws.readonly(plan["from_lowers"])
                try:
                    found = []
                    for s in plan["srcs"]:
                        p = resolve_in(r.merged, s)
                        if not os.path.lexists(p):
                            raise ins.error(f"--from={plan['from']}: {s}: no such file or directory")
                        found.append((os.path.basename(s.rstrip("/")), p))
                    copy(target, found, plan["dest"], wd, what, context=r.merged,
                         several=plan["several"])
                finally:
                    r.discard()
            elif plan["srcs"]:
                copy(target, plan["found"], plan["dest"], wd, what, context=b.context,
                     ignore=b.ignore, unpack=ins.cmd == "ADD", several=plan["several"])
        except BuildError as e:
            if str(e).startswith(ins.file):
                raise
            raise ins.error(str(e)) from None
        except OSError as e:
            raise ins.error(f"{e.strerror}: {e.filename}") from None


def _expand(body: str, env: dict) -> str:
    """A heredoc body with an unquoted delimiter: $VAR and ${VAR} expanded, quotes kept."""
    import re

    def sub(m):
        name = m.group(1) or m.group(2)
        return env.get(name, "")
    return re.sub(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", sub, body)
