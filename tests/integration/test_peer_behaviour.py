"""Behaviours found by running a peer runtime's own test suite against the runner, each
checked here on a container that runs (or is refused, leaving nothing)."""
import pytest
from conftest import assert_nothing_left


@pytest.mark.parametrize("uts", [True, False])
def test_sysctl_kernel_hostname_is_refused(bundle, uts):
    # runc and crun refuse it even with a uts namespace: the hostname field says it
    if not uts:
        bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "uts"]
    bundle.linux["sysctl"] = {"kernel.hostname": "foo"}
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr.startswith("runner: linux.sysctl.kernel.hostname:"), r.stderr
    assert "hostname" in r.stderr.split(":", 2)[2]
    assert_nothing_left(bundle)


def test_sysctl_kernel_domainname_in_own_uts_namespace(bundle):
    bundle.linux["sysctl"] = {"kernel.domainname": "peerdomain"}
    r = bundle.sh("cat /proc/sys/kernel/domainname").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "peerdomain"
    with open("/proc/sys/kernel/domainname") as f:
        assert f.read().strip() != "peerdomain"
