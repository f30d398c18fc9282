"""The engine's errors, each carrying the HTTP status the Engine API answers with (dockerd's
errdefs: invalid parameter 400, not found 404, conflict 409, not modified 304)."""
from __future__ import annotations

import contextlib


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


@contextlib.contextmanager
def bad_input(*names: str):
    """The library's refusals of what a request asked (an ImageError, InvalidArgument, or an
    exception class named in `names`) as 400s with their message; anything else as it is."""
    from ..images.errors import ImageError

    try:
        yield
    except EngineError:
        raise
    except Exception as e:
        if isinstance(e, ImageError) or type(e).__name__ in ("InvalidArgument",) + names:
            raise BadRequest(str(e)) from None
        raise
