"""The instructions that only change the image config (ENV, LABEL, EXPOSE, VOLUME, USER,
WORKDIR, STOPSIGNAL, HEALTHCHECK, ONBUILD, CMD, ENTRYPOINT, SHELL, MAINTAINER), as Docker
applies them; shared by `build` and by `commit -c`."""
from __future__ import annotations

import posixpath
import re

from . import lex
from .dockerfile import Instruction

DEFAULT_SHELL = ["/bin/sh", "-c"]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}
ONBUILD_FORBIDDEN = {"ONBUILD", "FROM", "MAINTAINER"}


def pairs(ins: Instruction, env: dict, escape: str) -> list:
    """KEY=VALUE … (or the old `KEY VALUE` form) → [(key, value)], values expanded."""
    try:
        raw = lex.split_raw(ins.args, escape)
    except lex.LexError as e:
        raise ins.error(str(e)) from None
    if not raw:
        raise ins.error("requires at least one argument")
    try:
        if "=" not in raw[0]:
            if ins.cmd == "LABEL" or len(raw) < 2:
                raise ins.error(f"{raw[0]!r}: want KEY=VALUE")
            value = ins.args.lstrip()[len(raw[0]):].strip()
            return [(raw[0], lex.word(value, env, escape))]
        out = []
        for w in raw:
            k, eq, v = w.partition("=")
            if not eq or not k:
                raise ins.error(f"{w!r}: want KEY=VALUE")
            out.append((lex.word(k, env, escape), lex.word(v, env, escape)))
        return out
    except lex.LexError as e:
        raise ins.error(str(e)) from None


def set_env(config: dict, key: str, value: str) -> None:
    env = config.setdefault("Env", [])
    for i, e in enumerate(env):
        if e.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            return
    env.append(f"{key}={value}")


def env_dict(config: dict) -> dict:
    return dict(e.partition("=")[::2] for e in config.get("Env") or [])


def command(ins: Instruction, shell: list) -> list:
    if ins.json is not None:
        return list(ins.json)
    if not ins.args.strip():
        raise ins.error("requires a command")
    return list(shell) + [ins.args]


def _duration(ins: Instruction, flag: str, text: str) -> int:
    total, pos = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _UNITS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise ins.error(f"--{flag}: {text!r} is not a duration (like 30s, 1m30s)")
    return total


def healthcheck(ins: Instruction) -> dict:
    args = ins.args.strip()
    if args.upper() == "NONE":
        if ins.flags:
            raise ins.error("HEALTHCHECK NONE takes no flags")
        return {"Test": ["NONE"]}
    word, _, rest = args.partition(" ")
    if word.upper() != "CMD":
        raise ins.error("want HEALTHCHECK [flags] CMD command, or HEALTHCHECK NONE")
    from .dockerfile import _json_form

    js = _json_form(rest)
    hc: dict = {"Test": ["CMD"] + js if js is not None else ["CMD-SHELL", rest.strip()]}
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval"}
    for flag, value in ins.flags.items():
        if flag in names:
            hc[names[flag]] = _duration(ins, flag, value)
        elif flag == "retries":
            if not value.isdigit():
                raise ins.error(f"--retries: {value!r} is not a number")
            hc["Retries"] = int(value)
        else:
            raise ins.error(f"unknown flag --{flag}")
    return hc


def apply(ins: Instruction, config: dict, env: dict, escape: str, state: dict) -> None:
    """Apply a metadata instruction to `config` (the image config's `config` object).
    state: {"shell": [...], "cmd_set": bool} of the stage."""
    cmd = ins.cmd
    if ins.flags and cmd not in ("HEALTHCHECK",):
        raise ins.error(f"unknown flag --{next(iter(ins.flags))}")

    def one_word() -> str:
        try:
            w = lex.word(ins.args.strip(), env, escape)
        except lex.LexError as e:
            raise ins.error(str(e)) from None
        if not w:
            raise ins.error("requires an argument")
        return w

    def word_list() -> list:
        if ins.json is not None:
            try:
                return [lex.word(w, env, escape) for w in ins.json]
            except lex.LexError as e:
                raise ins.error(str(e)) from None
        try:
            return lex.words(ins.args, env, escape)
        except lex.LexError as e:
            raise ins.error(str(e)) from None

    if cmd == "ENV":
        for k, v in pairs(ins, env, escape):
            set_env(config, k, v)
    elif cmd == "LABEL":
        labels = config.setdefault("Labels", {})
        for k, v in pairs(ins, env, escape):
            labels[k] = v
    elif cmd == "EXPOSE":
        ports = config.setdefault("ExposedPorts", {})
        for p in word_list():
            num, _, proto = p.partition("/")
            proto = (proto or "tcp").lower()
            if not re.fullmatch(r"\d+(-\d+)?", num) or proto not in ("tcp", "udp", "sctp"):
                raise ins.error(f"invalid port {p!r} (want PORT[/tcp|udp|sctp])")
            lo, _, hi = num.partition("-")
            for n in range(int(lo), int(hi or lo) + 1):
                ports[f"{n}/{proto}"] = {}
    elif cmd == "VOLUME":
        vols = config.setdefault("Volumes", {})
        items = word_list()
        if not items:
            raise ins.error("requires at least one path")
        for v in items:
            if not v.strip():
                raise ins.error("a volume path is empty")
            vols[v] = {}
    elif cmd == "USER":
        config["User"] = one_word()
    elif cmd == "WORKDIR":
        w = one_word()
        config["WorkingDir"] = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/", w))
    elif cmd == "STOPSIGNAL":
        config["StopSignal"] = one_word()
    elif cmd == "HEALTHCHECK":
        config["Healthcheck"] = healthcheck(ins)
    elif cmd == "ONBUILD":
        inner, _, rest = ins.args.strip().partition(" ")
        inner = inner.upper()
        if not inner:
            raise ins.error("requires an instruction")
        if inner in ONBUILD_FORBIDDEN:
            raise ins.error(f"{inner} is not allowed as an ONBUILD trigger")
        config.setdefault("OnBuild", []).append(f"{inner} {rest.strip()}".strip())
    elif cmd == "CMD":
        config["Cmd"] = command(ins, state["shell"])
        state["cmd_set"] = True
    elif cmd == "ENTRYPOINT":
        if ins.json is not None or ins.args.strip():
            config["Entrypoint"] = command(ins, state["shell"])
        else:
            config.pop("Entrypoint", None)
        if not state.get("cmd_set"):
            config.pop("Cmd", None)  # an inherited CMD goes with a new ENTRYPOINT, as in Docker
    elif cmd == "SHELL":
        if ins.json is None or not ins.json:
            raise ins.error('must be a JSON array, as SHELL ["executable", "parameters"]')
        state["shell"] = list(ins.json)
    elif cmd == "MAINTAINER":
        state["author"] = ins.args.strip()
    else:
        raise ins.error("is not a metadata instruction")


def clean(config: dict) -> dict:
    """Empty fields are left out, as buildah and Docker write the config."""
    return {k: v for k, v in config.items() if v not in (None, "", [], {})}
