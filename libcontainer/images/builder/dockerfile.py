"""A Dockerfile → instructions. dockerfile-parse (Red Hat's parser, used by their build
system) splits the file into instructions — line continuations, comments, the `# escape=`
directive; on top of it this module reads the `# syntax=`/`# escape=` directives (for the
lexer), the leading `--flags`, the JSON (exec) form, and heredocs (`<<EOF`, `<<-EOF`,
quoted delimiters), which dockerfile-parse does not know: it takes a heredoc's lines for
instructions of their own, so they are read here from the raw lines and its items for
them dropped. Every error names the file, the line and the instruction."""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field

from ..errors import ImageError

KNOWN = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
         "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
         "HEALTHCHECK", "SHELL"}
HEREDOC_INSTRUCTIONS = {"RUN", "COPY", "ADD"}
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


class BuildError(ImageError):
    """A build failed at an instruction: the message starts with FILE:LINE: INSTRUCTION."""


@dataclass
class Heredoc:
    name: str
    body: str
    expand: bool  # an unquoted delimiter: variables in the body are expanded


@dataclass
class Instruction:
    cmd: str
    line: int            # 1-based, where it starts
    original: str        # the instruction as written (continuations joined)
    flags: dict          # leading --name=value (a bare --name is "true")
    args: str            # the rest
    json: list | None    # the exec / JSON form, when args is a JSON array of strings
    heredocs: list = field(default_factory=list)
    file: str = "Dockerfile"

    def error(self, msg: str) -> BuildError:
        return BuildError(f"{self.file}:{self.line}: {self.cmd}: {msg}")


@dataclass
class Dockerfile:
    instructions: list
    escape: str = "\\"
    syntax: str = ""
    file: str = "Dockerfile"


def _directives(lines: list, file: str) -> tuple:
    escape, syntax = "\\", ""
    for n, raw in enumerate(lines, 1):
        m = _DIRECTIVE.match(raw.strip())
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        if key == "escape":
            if value not in ("\\", "`"):
                raise BuildError(f"{file}:{n}: invalid escape directive {value!r}: must be ` or \\")
            escape = value
        elif key == "syntax":
            syntax = value
        else:
            break
    return escape, syntax


def _flags(text: str) -> tuple:
    flags, rest = {}, text.lstrip()
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        if word == "--":
            break
        name, eq, value = word[2:].partition("=")
        flags[name] = value if eq else "true"
        rest = after.lstrip()
    return flags, rest


def _json_form(text: str):
    t = text.strip()
    if not t.startswith("["):
        return None
    try:
        value = json.loads(t)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse(data: bytes, file: str = "Dockerfile") -> Dockerfile:
    from dockerfile_parse import DockerfileParser

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BuildError(f"{file}: not UTF-8 text ({e})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    escape, syntax = _directives(lines, file)
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
    try:
        items = parser.structure
    except Exception as e:  # dockerfile-parse raises plain errors for broken input
        raise BuildError(f"{file}: cannot parse: {e}") from None
    out: list = []
    skip_to = -1
    for item in items:
        if item["startline"] <= skip_to:
            continue
        cmd = item["instruction"].upper()
        if cmd == "COMMENT":
            continue
        line = item["startline"] + 1
        if cmd not in KNOWN:
            raise BuildError(f"{file}:{line}: unknown instruction: {item['instruction']}")
        flags, args = _flags(item["value"])
        ins = Instruction(cmd=cmd, line=line, original=f"{cmd} {item['value']}".strip(),
                          flags=flags, args=args, json=None, file=file)
        if cmd in HEREDOC_INSTRUCTIONS and _HEREDOC.search(args) and _json_form(args) is None:
            pos = item["endline"] + 1
            for m in _HEREDOC.finditer(args):
                chomp, quote, name = m.group(1), m.group(2), m.group(3)
                body = []
                while True:
                    if pos >= len(lines):
                        raise ins.error(f"heredoc <<{name}: no line {name!r} ends it")
                    raw = lines[pos]
                    pos += 1
                    if (raw.lstrip("\t") if chomp else raw) == name:
                        break
                    body.append(raw.lstrip("\t") if chomp else raw)
                ins.heredocs.append(Heredoc(name, "".join(b + "\n" for b in body), not quote))
            skip_to = pos - 1
        else:
            ins.json = _json_form(args)
        out.append(ins)
    if not out:
        raise BuildError(f"{file}: the file has no instructions")
    return Dockerfile(out, escape, syntax, file)
