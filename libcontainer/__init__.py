"""libcontainer: start isolated processes from OCI bundles, from Python.

    import libcontainer
    code = libcontainer.run("/path/to/bundle", "mycontainer")      # foreground
    c = libcontainer.create("/path/to/bundle", "web", stdio=(None, log, log))
    c.start(); c.kill(15); c.wait(); c.delete()
    c = libcontainer.load("web")                                     # by id, any process
    spec = libcontainer.load_spec("/path/to/bundle")                 # parse + validate only
    codes = libcontainer.run_many([(bundle, "a"), (bundle, "b")], workers=2)   # threads
    libcontainer.run(bundle, "x", cleanup="background"); libcontainer.wait_cleanup()

Warnings go to the `libcontainer` logger (logging); configure it to see them.

Policy (parsing, validation, planning) is Python; the fork-and-exec hot path is a small C
shim (csrc/shim.c) that runs no Python after clone.
"""
from __future__ import annotations

from .errors import (AlreadyExists, ConfigError, ContainerError, ExecNotFound, InvalidArgument,
                     NotFound, StartError, WrongState)

# Imported on first use (PEP 562): a program that only needs a submodule (the runner-cni
# plugin, run once per container, needs libcontainer.network) does not pay for the
# container machinery (~5-10 ms here).
_LAZY = {"Container": ("container", "Container"), "create": ("creation", "create"),
         "CreateRequest": ("request", "CreateRequest"),
         "list_containers": ("container", "list_containers"), "load": ("container", "load"),
         "run": ("creation", "run"), "wait_cleanup": ("creation", "wait_cleanup"),
         "force_delete": ("recovery", "force_delete"),
         "OCI_VERSION": ("spec", "OCI_VERSION"), "Process": ("spec", "Process"),
         "Spec": ("spec", "Spec"), "load_spec": ("spec", "load")}


def __getattr__(name: str):
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = __import__(f"{__name__}.{where[0]}", fromlist=[where[1]])
    value = getattr(module, where[1])
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


def run_many(jobs, *, workers: int = 4, **common) -> list:
    """Run many foreground containers from threads (see pool.run_many)."""
    from .pool import run_many

    return run_many(jobs, workers=workers, **common)


__version__ = "0.1.0"

__all__ = ["run", "run_many", "wait_cleanup", "force_delete", "create", "CreateRequest", "load", "list_containers", "Container", "load_spec", "Spec", "Process",
           "OCI_VERSION", "ContainerError", "ConfigError", "StartError", "ExecNotFound",
           "InvalidArgument", "NotFound", "AlreadyExists", "WrongState", "__version__"]
