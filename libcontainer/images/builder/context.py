"""The build context: .dockerignore (Docker's patterns: `*`, `?`, `[…]`, `**`, `!`
exceptions, the last match wins, a match on a directory covers what is under it), source
paths of COPY/ADD (wildcards; never outside the context, neither by `..` nor by a symlink),
and the content digest of the sources that the cache key carries."""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat

from .dockerfile import BuildError

_MAGIC = set("*?[")


def _pattern_re(pat: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        if c == "*":
            if pat[i:i + 2] == "**":
                i += 2
                if pat[i:i + 1] == "/":
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pat.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pat[i + 1:j].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        elif c == "\\" and i + 1 < len(pat):
            i += 1
            out.append(re.escape(pat[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


class Ignore:
    def __init__(self, patterns: list):
        self.rules = []
        for p in patterns:
            p = p.strip()
            if not p or p.startswith("#"):
                continue
            neg = p.startswith("!")
            if neg:
                p = p[1:].strip()
            p = posixpath.normpath(p).lstrip("/")
            if p in (".", ""):
                continue
            self.rules.append((_pattern_re(p), neg))

    @classmethod
    def load(cls, context: str) -> "Ignore":
        try:
            with open(os.path.join(context, ".dockerignore"), encoding="utf-8") as f:
                return cls(f.read().splitlines())
        except FileNotFoundError:
            return cls([])

    def excluded(self, rel: str) -> bool:
        """rel: a path relative to the context, '/'-separated."""
        if not self.rules:
            return False
        parts = rel.split("/")
        result = False
        for rx, neg in self.rules:
            for k in range(len(parts), 0, -1):  # the path or one of its parents
                if rx.match("/".join(parts[:k])):
                    result = not neg
                    break
        return result


def has_wildcard(path: str) -> bool:
    return any(c in _MAGIC for c in path)


def resolve_in(root: str, rel: str, refuse_escape: str = "") -> str:  # noqa: C901
    """The host path of `rel` inside `root`, symlinks followed inside it. With refuse_escape
    (a description of the source, for the message) a symlink or `..` that leads outside is
    refused; without, the path is clamped at root, as a chroot sees it. The last component
    may be absent."""
    todo = [p for p in rel.split("/") if p not in ("", ".")]
    done: list = []
    hops = 0
    link = ""  # the first symlink followed, for the message
    while todo:
        comp = todo.pop(0)
        if comp == "..":
            if not done:
                if refuse_escape:
                    raise BuildError(f"{refuse_escape}: " + (
                        f"the symlink {link} points outside the build context" if link
                        else "the path leaves the build context"))
                continue
            done.pop()
            continue
        full = os.path.join(root, *done, comp)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return os.path.join(root, *done, comp, *todo)
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise BuildError(f"{refuse_escape or rel}: too many levels of symbolic links")
            target = os.readlink(full)
            link = link or "/".join(done + [comp])
            if target.startswith("/"):
                if refuse_escape:
                    raise BuildError(f"{refuse_escape}: the symlink {'/'.join(done + [comp])} "
                                     f"points outside the build context ({target})")
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(comp)
    return os.path.join(root, *done)


def sources(context: str, srcs: list, ignore: Ignore, what: str) -> list:
    """COPY/ADD sources from the context → [(rel, host path)], wildcards expanded in
    sorted order; `..` out of the context and symlinks out of it refused."""
    out = []
    for src in srcs:
        clean = posixpath.normpath(src)
        if clean == ".." or clean.startswith("../"):
            raise BuildError(f"{what}: {src}: forbidden path outside the build context")
        rel = posixpath.normpath("/" + src).lstrip("/")
        if has_wildcard(rel):
            rx = _pattern_re(rel)
            hits = []
            for base, dirs, files in os.walk(context):
                dirs.sort()
                for n in dirs + files:
                    r = os.path.relpath(os.path.join(base, n), context)
                    if rx.match(r) and not ignore.excluded(r):
                        hits.append(r)
            if not hits:
                raise BuildError(f"{what}: no source files were specified ({src} matches nothing)")
            for r in sorted(hits):
                out.append((r, resolve_in(context, r, f"{what}: {r}")))
            continue
        if rel and ignore.excluded(rel):
            raise BuildError(f"{what}: {src}: excluded by .dockerignore")
        path = resolve_in(context, rel, f"{what}: {src}")
        if not os.path.lexists(path):
            raise BuildError(f"{what}: {src}: no such file or directory in the build context")
        out.append((rel, path))
    return out


def walk_included(context: str, rel: str, path: str, ignore: Ignore):
    """(rel of each entry under a source directory, host path, lstat), .dockerignore applied,
    in sorted order; symlinks are entries (not followed)."""
    for base, dirs, files in os.walk(path):
        dirs.sort()
        brel = os.path.relpath(base, path)
        keep = []
        for n in sorted(dirs + files):
            sub = n if brel == "." else f"{brel}/{n}"
            crel = f"{rel}/{sub}" if rel else sub
            if ignore.excluded(crel):
                continue
            p = os.path.join(base, n)
            st = os.lstat(p)
            if n in dirs:
                keep.append(n)
            yield sub, p, st
        dirs[:] = [d for d in dirs if d in keep]


def digest(context: str, found: list, ignore: Ignore, for_context: bool = True) -> str:
    """The content digest of the sources: paths, types, modes, link targets, contents."""
    h = hashlib.sha256()

    def one(rel: str, p: str, st) -> None:
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
        h.update(b"\n")

    for rel, path in found:
        st = os.lstat(path)
        one(rel, path, st)
        if stat.S_ISDIR(st.st_mode):
            for sub, p, s in walk_included(context, rel if for_context else "", path,
                                           ignore if for_context else Ignore([])):
                one(f"{rel}/{sub}", p, s)
    return "sha256:" + h.hexdigest()
