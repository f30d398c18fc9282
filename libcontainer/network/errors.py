"""CNI errors: a code from the CNI spec (1.0 "Error" section) and a message naming the field."""
from __future__ import annotations

from ..errors import ContainerError

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN = 11
NOT_AVAILABLE = 50  # STATUS (CNI 1.1): cannot service ADD requests
GENERIC = 999  # what the reference plugins' skel uses for any other failure


class CNIError(ContainerError):
    def __init__(self, code: int, msg: str, details: str = ""):
        self.code, self.msg, self.details = code, msg, details
        super().__init__(msg + (f": {details}" if details else ""))

    def json(self, version: str) -> dict:
        out = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def bad_config(field: str, msg: str) -> CNIError:
    return CNIError(INVALID_CONFIG, f"{field}: {msg}")
