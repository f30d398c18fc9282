"""Events (docker events): kept in a bounded ring for `since`, pushed to subscribers."""
from __future__ import annotations

import collections
import threading
import time


class Events:
    def __init__(self, keep: int = 1024):
        self.ring: collections.deque = collections.deque(maxlen=keep)
        self.subscribers: list = []
        self.lock = threading.Lock()

    def emit(self, kind: str, action: str, actor_id: str, attributes: dict | None = None) -> None:
        ns = time.time_ns()
        ev = {"Type": kind, "Action": action,
              "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
              "scope": "local", "time": ns // 10**9, "timeNano": ns}
        if kind == "container":  # the old fields docker-compose 1.29 still reads
            ev.update({"status": action, "id": actor_id,
                       "from": (attributes or {}).get("image", "")})
        with self.lock:
            self.ring.append(ev)
            subs = list(self.subscribers)
        for s in subs:
            s(ev)

    def subscribe(self, fn) -> list:
        """→ the events so far (for since); fn gets each later one (from any thread)."""
        with self.lock:
            self.subscribers.append(fn)
            return list(self.ring)

    def unsubscribe(self, fn) -> None:
        with self.lock:
            if fn in self.subscribers:
                self.subscribers.remove(fn)


def matches(ev: dict, filters: dict) -> bool:
    """docker's event filters: type, event (action), container, image, label, network, volume."""
    if not filters:
        return True
    attrs = ev["Actor"]["Attributes"]
    for key, wanted in filters.items():
        wanted = list(wanted)
        if key == "type" and ev["Type"] not in wanted:
            return False
        if key in ("event", "action") and ev["Action"].split(":")[0] not in wanted and ev["Action"] not in wanted:
            return False
        if key in ("container", "network", "volume", "image") and (
                ev["Type"] != key or not any(w in (ev["Actor"]["ID"], attrs.get("name"))
                                             or ev["Actor"]["ID"].startswith(w) for w in wanted)):
            if not (key == "image" and attrs.get("image") in wanted):
                return False
        if key == "label":
            for w in wanted:
                k, eq, v = w.partition("=")
                if k not in attrs or (eq and attrs[k] != v):
                    return False
    return True
