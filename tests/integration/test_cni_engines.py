"""containerd's `ctr run --cni` and podman's CNI backend use runner-cni as they would the
reference bridge plugin.

containerd is the private instance of test_engines.py (own socket, root, state, its
fixture reused here), with the runner as its runtime. ctr 1.6 takes the first conf in
/etc/cni/net.d and the plugins in /opt/cni/bin, with no flag to change either: ctr runs in
a mount namespace of its own where the test's conf dir is bound on /etc/cni/net.d and a
tmpfs on /opt holds cni/bin/runner-cni, and in the test's "host" network namespace, where
the bridge goes. It sends DEL with an empty CNI_NETNS when the task is gone.

podman (test_engines' private instance: its storage, the runner as runtime) runs with a
containers.conf of the test's choosing network_backend "cni", the test's conf dir, plugins
from a dir holding runner-cni; its netns is a bind mount under /run/netns (the
namespace-path case: a plugin must not take the path of the fd for the namespace)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

import pytest
from cni_helpers import Netns, allocation_files, ask, ours_command, veths
from hostpaths import HostPaths
from test_engines import (IMAGE, containerd, podman,  # noqa: F401  (fixtures)
                          sh)


# libcni (in ctr and in podman) caches every result under /var/lib/cni/results, made on
# first use and emptied by DEL; removed after the test when it was not there before
LIBCNI_PATHS = ["/var/lib/cni"]


@pytest.fixture
def cd(containerd):  # noqa: F811
    containerd.runtime.reset()
    yield containerd


def _is_mount_point(path: str) -> bool:
    """From mountinfo: a bind mount of a directory on itself is on the same device as its
    parent, which os.path.ismount cannot tell."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


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
    host_paths = HostPaths(LIBCNI_PATHS)
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
        assert host.nft_rules() == []
        assert "ctr0" in host.links()  # the bridge stays, as the reference's does
    finally:
        host.close()
        host_paths.remove()


def conflist(path, name: str, bridge: str, subnet: str, state) -> None:
    path.write_text(json.dumps({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "runner-cni", "bridge": bridge, "isGateway": True, "ipMasq": True,
                     "stateDir": str(state), "capabilities": {"portMappings": True},
                     "ipam": {"type": "host-local", "subnet": subnet,
                              "routes": [{"dst": "0.0.0.0/0"}]}}]}))


def test_podman_cni_backend(podman, tmp_path):  # noqa: F811
    exe = ours_command()
    if len(exe) != 1:
        pytest.skip("runner-cni is not installed (make venv)")
    confdir, bindir, state = tmp_path / "net.d", tmp_path / "bin", tmp_path / "cni-state"
    confdir.mkdir()
    bindir.mkdir()
    os.symlink(exe[0], bindir / "runner-cni")
    conflist(confdir / "pmnet.conflist", "pmnet", "pm0", "10.99.7.0/24", state)
    conf = tmp_path / "containers.conf"
    with open(podman.conf) as f:
        base = f.read()
    conf.write_text(base.replace("[network]\n", "[network]\n" 'network_backend = "cni"\n'
                                 f'cni_plugin_dirs = ["{bindir}", "/usr/lib/cni"]\n')
                    .replace(f'network_config_dir = "{podman.base}/networks"',
                             f'network_config_dir = "{confdir}"'))
    env = dict(podman.env, CONTAINERS_CONF=str(conf))
    flags = [f for f in podman.run_flags if f not in ("--network", "none")]
    host_paths = HostPaths(["/run/netns"] + LIBCNI_PATHS)
    # podman bind-mounts /run/netns on itself the first time (the directory may be there
    # already, unmounted): that mount is undone if it was not there before
    netns_mounted = _is_mount_point("/run/netns")
    host = Netns()
    try:
        host.sh("ip", "link", "set", "lo", "up")
        cmd = ["podman", *podman.global_flags, "run", "--rm", *flags, "--network", "pmnet",
               "-p", "8080:80", IMAGE, "sh", "-c",
               "ip -o -4 addr show eth0; ip route; nc -l -p 80 -e echo from-podman"]
        p = host.popen(*cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            got = ""
            for _ in range(100):
                got = ask(host, "tcp", "10.99.7.1", 8080)
                if got or p.poll() is not None:
                    break
                time.sleep(0.1)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 0, out + err
        assert "inet 10.99.7.2/24" in out and "default via 10.99.7.1 dev eth0" in out, out
        assert got == "from-podman"
        assert allocation_files(str(state)) == []
        assert veths(host) == []
        assert host.nft_rules() == []
    finally:
        host.close()
        if not netns_mounted and _is_mount_point("/run/netns"):
            sh(["umount", "/run/netns"], timeout=10)
        host_paths.remove()
