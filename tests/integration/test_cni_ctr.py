"""containerd's `ctr run --cni` uses runner-cni as it would the reference bridge plugin.

containerd is the private instance of test_engines.py (own socket, root, state, its
fixture reused here), with the runner as its runtime. ctr 1.6 takes the first conf in
/etc/cni/net.d and the plugins in /opt/cni/bin, with no flag to change either: ctr runs in
a mount namespace of its own where the test's conf dir is bound on /etc/cni/net.d and a
tmpfs on /opt holds cni/bin/runner-cni, and in the test's "host" network namespace, where
the bridge goes. It sends DEL with an empty CNI_NETNS when the task is gone."""
from __future__ import annotations

import json
import os
import shlex

import pytest
from cni_helpers import Netns, allocation_files, ours_command, veths
from test_engines import IMAGE, containerd, sh  # noqa: F401  (containerd: the fixture)


@pytest.fixture
def cd(containerd):  # noqa: F811
    containerd.runtime.reset()
    yield containerd


def test_ctr_run_cni(cd, tmp_path):
    exe = ours_command()
    if len(exe) != 1:
        pytest.skip("runner-cni is not installed (make venv)")
    confdir, state = tmp_path / "net.d", tmp_path / "cni-state"
    confdir.mkdir()
    (confdir / "10-ctrnet.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "ctrnet",
        "plugins": [{"type": "runner-cni", "bridge": "ctr0", "isGateway": True, "ipMasq": True,
                     "stateDir": str(state),
                     "ipam": {"type": "host-local", "subnet": "10.97.0.0/24",
                              "routes": [{"dst": "0.0.0.0/0"}]}}]}))
    host = Netns()
    try:
        ctr = " ".join(shlex.quote(a) for a in
                       ["ctr", "--address", cd.sock, "run", "--rm", "--cni", *cd.run_flags("n1"),
                        IMAGE, "n1", "sh", "-c", "ip -o -4 addr show eth0; ip route"])
        script = (f"mount --bind {confdir} /etc/cni/net.d && mount -t tmpfs tmpfs /opt && "
                  f"mkdir -p /opt/cni/bin && ln -s {exe[0]} /opt/cni/bin/runner-cni && "
                  f"exec {ctr}")
        r = sh(["nsenter", f"--net={host.path}", "unshare", "-m", "sh", "-c", script])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "inet 10.97.0.2/24" in r.stdout and "eth0" in r.stdout, r.stdout
        assert "default via 10.97.0.1 dev eth0" in r.stdout
        # containerd's DEL (no netns) released the address and the record; the veth died
        # with the container's namespace
        assert allocation_files(str(state)) == []
        assert veths(host) == []
        assert [t for t in host.nft_tables() if "rcni-" in t] == []
        assert "ctr0" in host.links()  # the bridge stays, as the reference's does
    finally:
        host.close()
