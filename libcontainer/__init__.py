"""libcontainer: start isolated processes from OCI bundles, from Python.

    import libcontainer
    code = libcontainer.run("/path/to/bundle", "mycontainer")

Policy (parsing, validation, planning) is Python; the fork-and-exec hot path is a small C
shim (csrc/shim.c) that runs no Python after clone.
"""
from __future__ import annotations

from .container import run
from .errors import (AlreadyExists, ConfigError, ContainerError, ExecNotFound, InvalidArgument,
                     NotFound, StartError, WrongState)
from .spec import OCI_VERSION, Spec, load

__version__ = "0.1.0"

__all__ = ["run", "load", "Spec", "OCI_VERSION", "ContainerError", "ConfigError", "StartError",
           "ExecNotFound", "InvalidArgument", "NotFound", "AlreadyExists", "WrongState",
           "__version__"]
