"""The daemon engine's pure parts: Docker's command rules, bind specs, sizes, signals,
detach keys, event filters, the HostConfig → OCI mapping's refusals (no root, no daemon)."""
from __future__ import annotations

import pytest

from libcontainer.engine import oci
from libcontainer.engine.daemon import _size_opt, parse_signal
from libcontainer.engine.errors import BadRequest
from libcontainer.engine.events import matches

IMG = {"config": {"Entrypoint": ["/ep"], "Cmd": ["default"]}}


def test_command_rules():
    assert oci.command({}, IMG) == (["/ep"], ["default"])
    assert oci.command({"Cmd": ["x"]}, IMG) == (["/ep"], ["x"])
    # a given entrypoint drops the image's Cmd (docker's rule)
    assert oci.command({"Entrypoint": ["sh"]}, IMG) == (["sh"], [])
    assert oci.command({"Entrypoint": ["sh"], "Cmd": ["-c", "x"]}, IMG) == (["sh"], ["-c", "x"])
    assert oci.command({"Entrypoint": [""][:0], "Cmd": ["true"]}, {"config": {"Cmd": ["sh"]}}) == ([], ["true"])
    with pytest.raises(BadRequest, match="No command"):
        oci.command({}, {"config": {}})


def test_bind_specs():
    assert oci.parse_bind("/a:/b:ro") == {"Type": "bind", "Source": "/a", "Target": "/b",
                                         "ReadOnly": True, "Propagation": ""}
    assert oci.parse_bind("vol:/data")["Type"] == "volume"
    assert oci.parse_bind("/anon")["Type"] == "volume"
    with pytest.raises(BadRequest, match="Binds"):
        oci.parse_bind("a:b:c:d")


def test_sizes_and_signals():
    assert _size_opt("10k") == 10240 and _size_opt("1m") == 1 << 20 and _size_opt("") == 0
    with pytest.raises(BadRequest, match="max-size"):
        _size_opt("lots")
    assert parse_signal("SIGTERM") == 15 and parse_signal("kill") == 9 and parse_signal("10") == 10
    with pytest.raises(BadRequest):
        parse_signal("SIGNOPE")


def test_hostconfig_refusals():
    with pytest.raises(BadRequest, match="Memory"):
        oci.resources({"Memory": "1g"})
    with pytest.raises(BadRequest, match="Minimum memory"):
        oci.resources({"Memory": 1024})
    with pytest.raises(BadRequest, match="CapAdd"):
        oci.capabilities({"CapAdd": ["NOT_A_CAP"]})
    with pytest.raises(BadRequest, match="SecurityOpt"):
        oci.security_opts({"SecurityOpt": ["bogus=1"]})
    assert oci.resources({"NanoCpus": 500_000_000}) == {"cpu": {"period": 100000, "quota": 50000}}
    assert oci.resources({"PidsLimit": 10}) == {"pids": {"limit": 10}}
    caps = oci.capabilities({"CapDrop": ["ALL"], "CapAdd": ["NET_ADMIN"]})
    assert caps == ["CAP_NET_ADMIN"] or caps == []


def test_event_filters():
    ev = {"Type": "container", "Action": "start", "Actor": {"ID": "abc123", "Attributes": {"name": "web", "team": "a"}}}
    assert matches(ev, {}) and matches(ev, {"type": ["container"]})
    assert matches(ev, {"container": ["web"]}) and matches(ev, {"container": ["abc"]})
    assert not matches(ev, {"event": ["die"]}) and matches(ev, {"event": ["start"]})
    assert matches(ev, {"label": ["team=a"]}) and not matches(ev, {"label": ["team=b"]})


def test_detach_keys():
    pytest.importorskip("aiohttp")
    from libcontainer.engine.api.streams import parse_detach_keys

    assert parse_detach_keys("") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(ValueError):
        parse_detach_keys("ctrl-long")
