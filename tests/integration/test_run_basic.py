"""`runner run`: the process's stdio, exit status, and basic isolation, seen from inside."""
import signal
import subprocess

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, new_id


def test_stdout_and_exit_status(bundle):
    r = bundle.sh("echo hello; exit 7").run()
    assert r.stdout == "hello\n"
    assert r.returncode == 7
    assert_nothing_left(bundle)


def test_killed_by_signal_exits_128_plus_n(bundle):
    # pid 1 of a pid namespace ignores signals it has no handler for: share the host's
    bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "pid"]
    r = bundle.sh("kill -TERM $$; sleep 5").run()
    assert r.returncode == 128 + 15


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_are_forwarded(bundle, sig):
    bundle.sh(f"trap 'echo got; exit 42' {sig.name[3:]}; echo ready; "
              "while true; do sleep 0.05; done")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    p = subprocess.Popen(RUNNER + ["--root", bundle.root, "run", "-b", bundle.path, cid],
                         stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(sig)
    out, _ = p.communicate(timeout=20)
    assert out == "got\n"
    assert p.returncode == 42


def test_stdin_is_the_runners(bundle):
    r = bundle.sh("read line; echo got:$line").run(input="abc\n")
    assert r.stdout == "got:abc\n"


def test_pid_namespace_init_is_pid_1(bundle):
    r = bundle.sh("echo $$; ls /proc | grep -c '^[0-9]'").run()
    pid, count = r.stdout.split()
    assert pid == "1"
    assert int(count) <= 3  # sh, ls, grep at most


def test_hostname(bundle):
    bundle.config["hostname"] = "box1"
    bundle.config["domainname"] = "example.org"
    r = bundle.sh("hostname; cat /proc/sys/kernel/domainname").run()
    assert r.stdout.split() == ["box1", "example.org"]
