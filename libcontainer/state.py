"""The state directory: ``<root>/<id>/state.json``, written atomically, one per container."""
from __future__ import annotations

import os

from . import jsonio
from .errors import AlreadyExists, InvalidArgument, NotFound

DEFAULT_ROOT = "/run/runner"


def check_id(container_id: str) -> None:
    if not container_id:
        raise InvalidArgument("container id: must not be empty")
    if "/" in container_id or container_id in (".", "..") or "\0" in container_id:
        raise InvalidArgument(f"container id {container_id!r}: must not contain '/' or be '.' or '..'")
    if len(container_id) > 1024:
        raise InvalidArgument("container id: longer than 1024 characters")


class StateDir:
    def __init__(self, root: str, container_id: str):
        check_id(container_id)
        self.root = root
        self.id = container_id
        self.path = os.path.join(root, container_id)

    def create(self) -> None:
        """Claim the ID: mkdir is atomic, so of two concurrent creates exactly one wins."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id {self.id!r} already exists") from None

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def write(self, state: dict) -> None:
        tmp = os.path.join(self.path, ".state.json.tmp")
        with open(tmp, "w") as f:
            f.write(jsonio.dumps(state))
        os.rename(tmp, os.path.join(self.path, "state.json"))

    def read(self) -> dict:
        try:
            with open(os.path.join(self.path, "state.json"), "rb") as f:
                return jsonio.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container {self.id!r} does not exist") from None

    def remove(self) -> None:
        try:
            for name in os.listdir(self.path):
                os.unlink(os.path.join(self.path, name))
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
