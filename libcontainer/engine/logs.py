"""Reading the json-file log that runner-monitor writes: json.log (and its rotated
json.log.1 … older), one {"log","stream","time"} record a line — docker's format."""
from __future__ import annotations

import json
import os

from .records import parse_time


def files(cdir: str) -> list:
    """Oldest first."""
    base = os.path.join(cdir, "json.log")
    out = []
    i = 1
    while os.path.exists(f"{base}.{i}"):
        out.append(f"{base}.{i}")
        i += 1
    out.reverse()
    if os.path.exists(base):
        out.append(base)
    return out


def parse_line(line: bytes):
    try:
        rec = json.loads(line)
        return rec["stream"], rec["log"], rec["time"]
    except (ValueError, KeyError, TypeError):
        return None


def read(cdir: str, stdout: bool, stderr: bool, since: float = 0, until: float = 0,
         tail: int = -1) -> tuple:
    """→ ([(stream, text, time)], offset of json.log's end) for the records asked."""
    recs = []
    end = 0
    for path in files(cdir):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if path.endswith("json.log"):
            end = len(data)
        for line in data.splitlines():
            r = parse_line(line)
            if r and keep(r, stdout, stderr, since, until):
                recs.append(r)
    if tail >= 0:
        recs = recs[-tail:] if tail else []
    return recs, end


def keep(r, stdout: bool, stderr: bool, since: float, until: float) -> bool:
    if r[0] == "stdout" and not stdout or r[0] == "stderr" and not stderr:
        return False
    if since or until:
        t = parse_time(r[2])
        if since and t < since or until and t > until:
            return False
    return True
