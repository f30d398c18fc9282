"""Paths outside our temp dirs that an engine or tool makes on first use whatever its
--root says (and never removes): those a test's engine made are removed after it."""
from __future__ import annotations

import os
import shutil

# podman, even with a private --root/--runroot
PODMAN_HOST_PATHS = ["/run/containers", "/var/lib/containers/cache", "/var/lib/containers",
                     "/dev/shm/libpod_lock"]


class HostPaths:
    """Only those of `paths` that did not exist when this was made are removed; also a
    context manager around one tool's call."""

    def __init__(self, paths: list):
        self.new = [p for p in paths if not os.path.lexists(p)]

    def remove(self) -> None:
        for p in self.new:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.lexists(p):
                os.unlink(p)

    def __enter__(self) -> "HostPaths":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
