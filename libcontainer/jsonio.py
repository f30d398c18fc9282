"""JSON without `import json`.

The json package imports `re`, which costs ~11 ms at start-up on this machine: a third of a
`runner run`. The C accelerator `_json` has all we need; this module drives it directly."""
from __future__ import annotations

import _json

_WS = " \t\n\r"


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str):
        raise ValueError(f"invalid JSON constant {name}")


_scan = _json.make_scanner(_Context())


class JSONError(ValueError):
    def __init__(self, msg: str, text: str, pos: int):
        line = text.count("\n", 0, pos) + 1
        col = pos - text.rfind("\n", 0, pos)
        super().__init__(f"{msg} at line {line} column {col}")


def loads(text: str | bytes) -> object:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    i = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, i)
    except (StopIteration, ValueError, SystemError) as e:
        # The C scanner builds most of its errors from json.decoder, which is not imported
        # on the happy path (it pulls in `re`); without it some errors come out as a bare
        # SystemError. Only now, on the error path, let the json package explain.
        raise _explain(text, e) from None
    except RecursionError:
        # the C scanner recurses per level; nothing valid nests anywhere near this deep
        raise JSONError("nested too deeply", text, i) from None
    rest = len(text) - len(text.rstrip(_WS))
    if end != len(text) - rest:
        raise JSONError("extra data after the JSON value", text, end)
    return obj


def _explain(text: str, exc: BaseException) -> JSONError:
    import json

    try:
        json.loads(text, parse_constant=_Context.parse_constant)
    except json.JSONDecodeError as e:
        return JSONError(e.msg, text, e.pos)
    except ValueError as e:  # parse_constant: NaN, Infinity
        return JSONError(str(e), text, getattr(exc, "pos", 0))
    pos = exc.value if isinstance(exc, StopIteration) else getattr(exc, "pos", 0)
    return JSONError("invalid JSON", text, pos or 0)


def _refuse(obj):
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


# the C encoder of the json package, compact separators, ASCII output: what json.dumps does
_encode = _json.make_encoder(None, _refuse, _json.encode_basestring_ascii, None, ":", ",",
                             False, False, True)


def dumps(obj: object, indent: int | None = None) -> str:
    if indent is None:
        return "".join(_encode(obj, 0))
    out: list[str] = []
    _dump(obj, out, indent, 0)
    return "".join(out)


def _dump(obj, out, indent, level):
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_json.encode_basestring_ascii(obj))
    elif isinstance(obj, (int, float)):
        out.append(repr(obj) if isinstance(obj, float) else str(int(obj)))
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        pad, sep = _pads(indent, level)
        out.append("{")
        first = True
        for k, v in obj.items():
            out.append(pad if first else "," + pad)
            first = False
            out.append(_json.encode_basestring_ascii(str(k)))
            out.append(": " if indent is not None else ":")
            _dump(v, out, indent, level + 1)
        out.append(sep + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        pad, sep = _pads(indent, level)
        out.append("[")
        for i, v in enumerate(obj):
            out.append(pad if i == 0 else "," + pad)
            _dump(v, out, indent, level + 1)
        out.append(sep + "]")
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def _pads(indent, level):
    if indent is None:
        return "", ""
    return "\n" + " " * (indent * (level + 1)), "\n" + " " * (indent * level)
