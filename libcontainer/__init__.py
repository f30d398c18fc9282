"""libcontainer: start isolated processes from OCI bundles, from Python.

    import libcontainer
    code = libcontainer.run("/path/to/bundle", "mycontainer")      # foreground
    c = libcontainer.create("/path/to/bundle", "web", stdio=(None, log, log))
    c.start(); c.kill(15); c.wait(); c.delete()
    c = libcontainer.load("web")                                     # by id, any process
    spec = libcontainer.load_spec("/path/to/bundle")                 # parse + validate only

Policy (parsing, validation, planning) is Python; the fork-and-exec hot path is a small C
shim (csrc/shim.c) that runs no Python after clone.
"""
from __future__ import annotations

from .container import Container, create, list_containers, load, run
from .errors import (AlreadyExists, ConfigError, ContainerError, ExecNotFound, InvalidArgument,
                     NotFound, StartError, WrongState)
from .spec import OCI_VERSION, Process, Spec
from .spec import load as load_spec

__version__ = "0.1.0"

__all__ = ["run", "create", "load", "list_containers", "Container", "load_spec", "Spec", "Process",
           "OCI_VERSION", "ContainerError", "ConfigError", "StartError", "ExecNotFound",
           "InvalidArgument", "NotFound", "AlreadyExists", "WrongState", "__version__"]
