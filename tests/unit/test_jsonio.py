"""jsonio: the json-free JSON reader/writer must agree with the json module."""
import json

import pytest

from libcontainer import jsonio

VALUES = [None, True, False, 0, -5, 2 ** 64, 1.5, "", "é\u2603\n\"\\", [], {}, [1, [2, {"a": None}]],
          {"x": {"y": [True, "z"]}, "n": 3}]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("indent", [None, 2])
def test_dumps_matches_json(value, indent):
    text = jsonio.dumps(value, indent=indent)
    assert json.loads(text) == value
    assert text == json.dumps(value, indent=indent, separators=(",", ": ") if indent else (",", ":"))


@pytest.mark.parametrize("value", VALUES)
def test_loads_round_trip(value):
    assert jsonio.loads(json.dumps(value)) == value
    assert jsonio.loads(b"  \n" + json.dumps(value).encode() + b"\n ") == value


@pytest.mark.parametrize("text,where", [
    ("{bad", "line 1 column 2"), ('{"a": }', "line 1 column 7"), ("[1,", "line 1 column 4"),
    ("", "line 1 column 1"), ("nul", "line 1 column 1"), ('{"a":1}x', "line 1 column 8"),
    ('{\n "a": 1,\n}', "line 3 column 1"), ('"\x01"', "line 1 column 2"), ("NaN", "NaN"),
    ("[Infinity]", "Infinity"), ('{"a" 1}', "line 1 column 6"),
])
def test_loads_errors_are_value_errors_with_a_position(text, where):
    with pytest.raises(ValueError) as e:
        jsonio.loads(text)
    assert isinstance(e.value, jsonio.JSONError)
    assert where in str(e.value)


def test_dumps_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError):
        jsonio.dumps({"a": object()})


def test_loads_does_not_import_json_on_success():
    import subprocess
    import sys

    code = ("import sys; from libcontainer import jsonio; jsonio.loads('{\"a\": [1]}'); "
            "print('json' in sys.modules, 're' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
