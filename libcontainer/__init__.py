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

from .container import Container, create, list_containers, load, run, wait_cleanup
from .errors import (AlreadyExists, ConfigError, ContainerError, ExecNotFound, InvalidArgument,
                     NotFound, StartError, WrongState)
from .spec import OCI_VERSION, Process, Spec
from .spec import load as load_spec


def run_many(jobs, *, workers: int = 4, **common) -> list:
    """Run many foreground containers from threads (see pool.run_many)."""
    from .pool import run_many

    return run_many(jobs, workers=workers, **common)


__version__ = "0.1.0"

__all__ = ["run", "run_many", "wait_cleanup", "create", "load", "list_containers", "Container", "load_spec", "Spec", "Process",
           "OCI_VERSION", "ContainerError", "ConfigError", "StartError", "ExecNotFound",
           "InvalidArgument", "NotFound", "AlreadyExists", "WrongState", "__version__"]
