"""One exception hierarchy. Every message names what was wrong: a config field path, a
command-line argument, or the syscall and the path it failed on."""
from __future__ import annotations


class ContainerError(Exception):
    """Base of every error libcontainer raises. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(ContainerError):
    """The bundle or its config.json is wrong; `field` is the JSON path (``process.args``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class InvalidArgument(ContainerError):
    """A bad argument to the API or the CLI (an ID, a signal name, a flag value)."""


class NotFound(ContainerError):
    """No container with that ID."""


class AlreadyExists(ContainerError):
    pass


class DamagedState(ContainerError):
    """A container's state.json cannot be read; `delete --force` removes what is left."""


class WrongState(ContainerError):
    """The operation is not allowed in the container's current status."""


class StartError(ContainerError):
    """Setting the container up failed; `op` says which step (a label from the plan)."""

    def __init__(self, message: str, errno: int = 0, op: str = ""):
        self.errno = errno
        self.op = op
        super().__init__(message)


class ExecNotFound(StartError):
    """The process's executable does not exist: runc and shells exit 127 for this."""

    exit_code = 127


class ExecNotPermitted(StartError):
    exit_code = 126
