"""Diagnostics of the library: warnings go to the `libcontainer` logger, which the embedding
program configures like any other (it has a NullHandler: unconfigured, nothing is printed —
a process that runs a thousand containers does not get a thousand lines on its stderr).

`logging` imports `re` and more (≈ 3 ms): it is imported at the first warning only. A
program that wants the warnings some other way (the `runner` CLI prints them as runc does)
sets `sink` to a function of one string and logging is never imported."""
from __future__ import annotations

LOGGER = "libcontainer"

# when set (a function of one string), warnings go there instead of the logger. (No
# `typing` import for its annotation: typing pulls in re, contextlib, enum, ≈ 5 ms.)
sink = None

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
