"""Diagnostics of the library: warnings go to the `libcontainer` logger, which the embedding
program configures like any other (it has a NullHandler: unconfigured, nothing is printed —
a process that runs a thousand containers does not get a thousand lines on its stderr).

`logging` imports `re` and more (≈ 3 ms): it is imported at the first warning only. A
program that wants the warnings some other way (the `runner` CLI prints them as runc does)
sets `sink` to a function of one string and logging is never imported.

Two levels: a warning is something the caller asked for and did not get (a capability
that cannot be granted); a debug message is a remark about a config that is common and
harmless (runc's own `spec` asks for ambient capabilities the kernel will not raise): it
goes to `debug_sink`, or the logger's DEBUG level, so a user running that config a
thousand times does not read it a thousand times."""
from __future__ import annotations

LOGGER = "libcontainer"

# when set (a function of one string), warnings go there instead of the logger. (No
# `typing` import for its annotation: typing pulls in re, contextlib, enum, ≈ 5 ms.)
sink = None
# the same for debug messages; unset, they go to the logger at DEBUG level
debug_sink = None

_logger = None


def logger():
    """The `libcontainer` logger (created, with its NullHandler, on first use)."""
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger(LOGGER)
        if not any(isinstance(h, logging.NullHandler) for h in _logger.handlers):
            _logger.addHandler(logging.NullHandler())
    return _logger


def warning(msg: str) -> None:
    if sink is not None:
        sink(msg)
    else:
        logger().warning("%s", msg)


def debug(msg: str) -> None:
    if debug_sink is not None:
        debug_sink(msg)
    elif sink is None:  # a program that took the warnings without `logging` wants no more
        logger().debug("%s", msg)
