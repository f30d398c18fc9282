"""The engine's errors, each carrying the HTTP status the Engine API answers with (dockerd's
errdefs: invalid parameter 400, not found 404, conflict 409, not modified 304)."""
from __future__ import annotations


class EngineError(Exception):
    status = 500


class BadRequest(EngineError):
    status = 400


class NotFound(EngineError):
    status = 404


class Conflict(EngineError):
    status = 409


class NotModified(EngineError):
    status = 304


class Forbidden(EngineError):
    status = 403


class Unavailable(EngineError):
    status = 503
