"""linux.netDevices parsing: every error names the entry (no root needed)."""
import pytest

from libcontainer import netdevices
from libcontainer.errors import ConfigError


def test_parse_names_and_defaults():
    devs = netdevices.parse({"netDevices": {"eth1": {"name": "ctr0"}, "eth2": {},
                                            "eth3": {"name": "net%d"}}})
    assert [(d.host, d.name) for d in devs] == [("eth1", "ctr0"), ("eth2", "eth2"),
                                                ("eth3", "net%d")]
    assert netdevices.parse({}) == []


@pytest.mark.parametrize("raw,field,words", [
    ([], "linux.netDevices", "must be an object"),
    ({"eth1": []}, "linux.netDevices.eth1", "must be an object"),
    ({"eth1": {"name": 3}}, "linux.netDevices.eth1.name", "must be a string"),
    ({"eth1": {"name": "a b"}}, "linux.netDevices.eth1.name", "not a valid"),
    ({"eth1": {"name": "x" * 16}}, "linux.netDevices.eth1.name", "not a valid"),
    ({"eth1": {"name": "."}}, "linux.netDevices.eth1.name", "not a valid"),
    ({"eth1": {"name": "e%d%d"}}, "linux.netDevices.eth1.name", "template"),
    ({"eth1": {"name": "e%s"}}, "linux.netDevices.eth1.name", "template"),
    ({"a/b": {}}, "linux.netDevices.a/b", "not a valid"),
    ({"eth%d": {}}, "linux.netDevices.eth%d", "template"),
    ({"eth1": {"name": "c0"}, "eth2": {"name": "c0"}}, "linux.netDevices.eth1.name", "two devices"),
])
def test_parse_errors_name_the_field(raw, field, words):
    with pytest.raises(ConfigError) as e:
        netdevices.parse({"netDevices": raw})
    assert e.value.field == field and words in str(e.value)


def test_final_name_takes_the_lowest_free_number():
    taken = {"lo", "eth0", "eth2"}
    assert netdevices._final_name(netdevices.NetDevice("x", "eth%d"), taken) == "eth1"
    assert netdevices._final_name(netdevices.NetDevice("x", "ctr0"), taken) == "ctr0"
    with pytest.raises(ConfigError) as e:
        netdevices._final_name(netdevices.NetDevice("x", "eth0"), taken)
    assert e.value.field == "linux.netDevices.x.name" and "already exists" in str(e.value)
