"""The root filesystem: root.path/readonly, pivot_root and its fallbacks, rootfsPropagation,
mounts[] with their options, devices, masked and read-only paths, and mount destinations
that must stay inside the rootfs whatever symlinks the rootfs holds."""
import os
import shutil
import subprocess

import pytest
from conftest import (REPO, RUNNER, assert_nothing_left, mount_options, mountinfo_line,
                      new_id)


def run_ok(bundle, script, *extra):
    r = bundle.sh(script).run(None, *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout


# ---- root --------------------------------------------------------------------------------

def test_root_path_is_relative_to_the_bundle(bundle):
    os.rename(bundle.rootfs, os.path.join(bundle.path, "other"))
    with open(os.path.join(bundle.path, "other", "marker"), "w") as f:
        f.write("it is me\n")
    bundle.config["root"]["path"] = "other"
    assert run_ok(bundle, "cat /marker") == "it is me\n"


@pytest.mark.parametrize("readonly", [True, False])
def test_root_readonly(bundle, readonly):
    bundle.config["root"]["readonly"] = readonly
    out = run_ok(bundle, "touch /newfile 2>&1 && echo written; cat /proc/self/mountinfo")
    line = mountinfo_line(out, "/")
    if readonly:
        assert "written" not in out and "Read-only file system" in out
        assert "ro" in line.split()[5].split(",")
        assert not os.path.exists(os.path.join(bundle.rootfs, "newfile"))
    else:
        assert out.startswith("written")
        assert os.path.exists(os.path.join(bundle.rootfs, "newfile"))


def test_nothing_of_the_host_is_reachable(bundle):
    # the runner's files, the host's binaries, and no way up from / or the cwd
    bundle.process["cwd"] = "/tmp"
    out = run_ok(bundle, "ls -a / | sort | tr '\\n' ' '; echo; cd ../../..; ls -a | sort | tr '\\n' ' '; echo; "
                         f"test -e {REPO} && echo repo; test -e /usr/bin/python3 && echo python; "
                         "readlink /proc/1/exe; readlink /proc/self/cwd")
    lines = out.splitlines()
    want = sorted([".", ".."] + os.listdir(bundle.rootfs))
    assert lines[0].split() == want
    assert lines[1].split() == want
    assert lines[2:] == ["/bin/busybox", "/"]


def _root_syscalls(bundle, tmp_path, *extra) -> str:
    """The pivot_root/chroot calls a run makes (strace -f)."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    out = tmp_path / "strace.out"
    bundle.set_args("true").write()
    bundle.last_id = new_id()
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=pivot_root,chroot", "-o", str(out),
                        *RUNNER, "--root", bundle.root, "run", "-b", bundle.path, *extra,
                        bundle.last_id], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    return " ".join(out.read_text().split())  # strace pads with spaces


def test_pivot_root_is_used_by_default(bundle, tmp_path):
    calls = _root_syscalls(bundle, tmp_path)
    assert 'pivot_root(".", ".") = 0' in calls
    assert "chroot(" not in calls


def test_no_pivot_uses_ms_move_and_chroot(bundle, tmp_path):
    calls = _root_syscalls(bundle, tmp_path, "--no-pivot")
    assert "pivot_root(" not in calls
    assert 'chroot(".") = 0' in calls
    out = run_ok(bundle, "ls -a / | sort | tr '\\n' ' '; echo; cd ../..; pwd", "--no-pivot")
    assert out.splitlines()[0].split() == sorted([".", ".."] + os.listdir(bundle.rootfs))
    assert out.splitlines()[1] == "/"


def test_no_pivot_leaves_no_bare_procfs_in_reach(bundle):
    """With MS_MOVE + chroot the host's /proc stays in the mount namespace below the new
    root; while it does, a process with user and pid namespaces of its own may mount a
    fresh, unmasked procfs. runc (msMoveRoot) takes the host's procfs and sysfs mounts
    away first: "permission denied" there, as with pivot_root (issue 11, point 11)."""
    import secprobe

    probe = secprobe.install(bundle)
    for flags in ((), ("--no-pivot",)):
        r = bundle.set_args(probe, "procmount").run(None, *flags)
        assert (r.returncode, r.stdout) == (0, "mount EPERM\n"), (flags, r.stderr)
    # the host's own are untouched
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    assert "/proc" in points and "/sys" in points
    assert_nothing_left(bundle)


CHROOT_SCRIPT = r"""
set -e
C=$1; shift
mount -t tmpfs chrp "$C"
mount --make-shared "$C"
mkdir "$C/r"
mount -t tmpfs chrr "$C/r"
# every top-level entry, so the repo is reachable wherever the checkout lives (/work, /check)
for p in /*; do
  d=${p#/}
  if [ -L "$p" ]; then cp -a "$p" "$C/r/$d"; elif [ -d "$p" ]; then mkdir "$C/r/$d"; mount --rbind "$p" "$C/r/$d"; fi
done
cd /
exec chroot "$C/r" "$@"
"""


def test_falls_back_to_ms_move_when_pivot_root_fails(bundle, tmp_path):
    """pivot_root(2) fails with EINVAL when the current root's parent mount is shared:
    build such a root (a chroot on a mount under a shared mount, in a private mount
    namespace) and run the runner in it."""
    script = tmp_path / "chroot.sh"
    script.write_text(CHROOT_SCRIPT)
    where = tmp_path / "chr"
    where.mkdir()
    bundle.sh("ls /; grep -c . /proc/self/mountinfo").write()
    bundle.last_id = new_id()
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", str(script), str(where),
           *RUNNER, "--root", bundle.root, "run", "-b", bundle.path, bundle.last_id]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:-1] == sorted(os.listdir(bundle.rootfs))
    # first, the same root must really make pivot_root fail (or this test proves nothing)
    probe = ["unshare", "--mount", "--propagation", "private", "sh", str(script), str(where),
             "sh", "-c", f"unshare -m --propagation slave sh -c 'mount --bind {bundle.rootfs} "
             f"{bundle.rootfs} && cd {bundle.rootfs} && pivot_root . .'"]
    r = subprocess.run(probe, capture_output=True, text=True)
    assert r.returncode != 0 and "Invalid argument" in r.stderr, r.stderr


@pytest.mark.parametrize("prop,tag", [("shared", "shared:"), ("rshared", "shared:"),
                                      ("unbindable", "unbindable"), ("private", None)])
def test_rootfs_propagation(bundle, prop, tag):
    bundle.linux["rootfsPropagation"] = prop
    line = mountinfo_line(run_ok(bundle, "cat /proc/self/mountinfo"), "/")
    optional = line.split(" - ")[0].split()[6:]
    if tag:
        assert any(o.startswith(tag) for o in optional), line
    else:
        assert optional == [], line


# ---- mounts --------------------------------------------------------------------------------

@pytest.fixture
def hostdir(tmp_path):
    d = tmp_path / "hostdir"
    (d / "sub").mkdir(parents=True)
    (d / "file").write_text("host file\n")
    yield d
    subprocess.run(["umount", "-R", str(d / "sub")], capture_output=True)


def test_mounts_are_made_in_order_creating_destinations(bundle, hostdir):
    bundle.config["mounts"] += [
        {"destination": "/a/b/c", "type": "tmpfs", "source": "tmpfs"},
        # lands inside the tmpfs above: only works in order
        {"destination": "/a/b/c/d/e", "type": "bind", "source": str(hostdir), "options": ["bind"]},
        {"destination": "/a/f/file", "type": "bind", "source": str(hostdir / "file"),
         "options": ["bind"]},
        # a later mount on the same place hides the earlier one
        {"destination": "/x", "type": "tmpfs", "source": "first", "options": ["size=1m"]},
        {"destination": "/x", "type": "tmpfs", "source": "second", "options": ["size=2m"]},
    ]
    out = run_ok(bundle, "cat /a/b/c/d/e/file /a/f/file; test -f /a/f/file && echo isfile; "
                         "cat /proc/self/mountinfo")
    lines = out.splitlines()
    assert lines[:3] == ["host file", "host file", "isfile"]
    info = "\n".join(lines[3:])
    assert mountinfo_line(info, "/a/b/c").split(" - ")[1].split()[0] == "tmpfs"
    assert mountinfo_line(info, "/x").split(" - ")[1].split()[1] == "second"
    assert not os.path.exists(os.path.join(bundle.rootfs, "a", "b", "c", "d"))


def test_bind_mount_flags(bundle, hostdir):
    # busybox runs the applet its argv[0] names
    shutil.copy(os.path.join(bundle.rootfs, "bin", "busybox"), hostdir / "echo")
    bundle.config["mounts"] += [
        {"destination": "/ro", "type": "bind", "source": str(hostdir),
         "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]},
        {"destination": "/rw", "type": "bind", "source": str(hostdir), "options": ["bind", "rw"]},
    ]
    out = run_ok(bundle, "touch /ro/x 2>&1; /ro/echo no 2>&1; /rw/echo exec-ok; "
                         "touch /rw/y && echo rw-ok; cat /proc/self/mountinfo")
    assert "Read-only file system" in out
    assert "Permission denied" in out  # noexec
    assert "exec-ok" in out and "rw-ok" in out
    ro = mount_options(mountinfo_line(out, "/ro"))
    assert {"ro", "nosuid", "nodev", "noexec"} <= ro
    rw = mount_options(mountinfo_line(out, "/rw"))
    assert "ro" not in mountinfo_line(out, "/rw").split()[5].split(",")
    assert "noexec" not in rw
    assert (hostdir / "y").exists() and not (hostdir / "x").exists()


def test_rbind_takes_submounts_and_bind_does_not(bundle, hostdir):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "subtmp", str(hostdir / "sub")],
                   check=True)
    (hostdir / "sub" / "in-submount").write_text("")
    bundle.config["mounts"] += [
        {"destination": "/r", "type": "bind", "source": str(hostdir), "options": ["rbind"]},
        {"destination": "/b", "type": "bind", "source": str(hostdir), "options": ["bind"]},
        {"destination": "/rro", "type": "bind", "source": str(hostdir), "options": ["rbind", "rro"]},
        {"destination": "/ro", "type": "bind", "source": str(hostdir), "options": ["rbind", "ro"]},
    ]
    out = run_ok(bundle, "ls /r/sub; echo --; ls /b/sub; echo --; "
                         "touch /rro/sub/z 2>&1; touch /ro/sub/w && echo ro-is-not-recursive")
    parts = out.split("--\n")
    assert parts[0] == "in-submount\n"
    assert parts[1] == ""
    assert "Read-only file system" in parts[2]
    assert "ro-is-not-recursive" in parts[2]
    assert not (hostdir / "sub" / "z").exists()


def test_tmpfs_options_size_mode_and_atime_flags(bundle):
    bundle.config["mounts"] += [
        {"destination": "/t1", "type": "tmpfs", "source": "tmpfs",
         "options": ["size=1m", "mode=1750", "noatime", "nosuid"]},
        {"destination": "/t2", "type": "tmpfs", "source": "tmpfs",
         "options": ["strictatime", "nodiratime", "uid=1000", "gid=1000"]},
        {"destination": "/t3", "type": "tmpfs", "source": "tmpfs", "options": ["relatime", "ro"]},
    ]
    out = run_ok(bundle, "stat -c '%a %u %g' /t1 /t2; df -k /t1 | tail -1; cat /proc/self/mountinfo")
    lines = out.splitlines()
    assert lines[0] == "1750 0 0"
    assert lines[1] == "1777 1000 1000"  # no mode given: tmpfs's default
    assert lines[2].split()[1] == "1024"
    t1 = mount_options(mountinfo_line(out, "/t1"))
    assert {"noatime", "nosuid", "size=1024k", "mode=1750"} <= t1
    t2 = mountinfo_line(out, "/t2").split()[5].split(",")
    assert "nodiratime" in t2 and "relatime" not in t2 and "noatime" not in t2
    t3 = mountinfo_line(out, "/t3").split()[5].split(",")
    assert "relatime" in t3 and "ro" in t3


@pytest.mark.parametrize("opt,tag", [("shared", "shared:"), ("private", None),
                                     ("unbindable", "unbindable"), ("slave", None)])
def test_mount_propagation_options(bundle, opt, tag):
    bundle.config["mounts"].append({"destination": "/p", "type": "tmpfs", "source": "tmpfs",
                                    "options": [opt]})
    line = mountinfo_line(run_ok(bundle, "cat /proc/self/mountinfo"), "/p")
    optional = line.split(" - ")[0].split()[6:]
    if tag:
        assert any(o.startswith(tag) for o in optional), line
    else:
        assert not any(o.startswith("shared:") for o in optional), line


def test_unknown_mount_options_are_filesystem_data(bundle):
    bundle.config["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["nr_inodes=123", "size=1m"]})
    out = run_ok(bundle, "df -i /t | tail -1")
    assert out.split()[1] == "123"


def test_a_mount_that_fails_names_its_entry_and_leaves_nothing(bundle):
    bundle.config["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["no_such_tmpfs_option=1"]})
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr.startswith(f"runner: mounts[{len(bundle.config['mounts']) - 1}]")
    assert_nothing_left(bundle)


@pytest.mark.parametrize("fs,dest,link", [("proc", "/proc", "/elsewhere"),
                                          ("sysfs", "/sys", "proc")])
def test_proc_or_sys_through_a_symlink_is_refused(bundle, fs, dest, link):
    """A rootfs whose /proc or /sys is a symlink would have procfs or sysfs mounted where
    the image points (CVE-2019-19921): refused, naming the mount, as runc refuses
    ("must be mounted on ordinary directory") (issue 11, point 10)."""
    os.makedirs(os.path.join(bundle.rootfs, "elsewhere"))
    target = os.path.join(bundle.rootfs, dest.lstrip("/"))
    shutil.rmtree(target)
    os.symlink(link, target)
    r = bundle.run()
    i = next(i for i, m in enumerate(bundle.config["mounts"]) if m["destination"] == dest)
    assert r.returncode == 1
    assert f"mounts[{i}].destination: {dest} in the rootfs is a symlink" in r.stderr, r.stderr
    assert "ordinary directory" in r.stderr
    assert os.listdir(os.path.join(bundle.rootfs, "elsewhere")) == []
    assert_nothing_left(bundle)


def test_proc_through_a_symlink_an_earlier_mount_made_is_refused(bundle, tmp_path):
    """The shim checks too, when it mounts: here the link only appears once an earlier
    mount has been made."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "dir").mkdir()
    os.symlink("dir", vol / "proc")
    bundle.config["mounts"] += [
        {"destination": "/vol", "type": "bind", "source": str(vol), "options": ["bind"]},
        {"destination": "/vol/proc", "type": "proc", "source": "proc"}]
    r = bundle.run()
    n = len(bundle.config["mounts"]) - 1
    assert r.returncode == 1
    assert r.stderr.startswith(f"runner: mounts[{n}]: mounting proc on /vol/proc"), r.stderr
    assert "Not a directory" in r.stderr
    assert os.listdir(vol / "dir") == []
    assert_nothing_left(bundle)


# ---- devices -------------------------------------------------------------------------------

def test_default_devices_and_links(bundle):
    out = run_ok(bundle, "for d in null zero full random urandom tty; do "
                         "stat -c '%n %F %a %t:%T %u:%g' /dev/$d; done; "
                         "for l in fd stdin stdout stderr ptmx; do echo /dev/$l $(readlink /dev/$l); done; "
                         "echo x > /dev/full 2>/dev/null || echo full-is-full; "
                         "head -c 2 /dev/zero | od -An -tx1; head -c 8 /dev/urandom | wc -c; "
                         "echo via-stdout > /dev/stdout")
    lines = out.splitlines()
    want = {"/dev/null": "1:3", "/dev/zero": "1:5", "/dev/full": "1:7", "/dev/random": "1:8",
            "/dev/urandom": "1:9", "/dev/tty": "5:0"}
    for line in lines[:6]:
        name, rest = line.split(" ", 1)
        assert rest.startswith("character special file 666 "), line
        maj, mnr = rest.split()[-2].split(":")
        assert f"{int(maj, 16)}:{int(mnr, 16)}" == want[name]
        assert rest.split()[-1] == "0:0"
    assert lines[6:11] == ["/dev/fd /proc/self/fd", "/dev/stdin /proc/self/fd/0",
                           "/dev/stdout /proc/self/fd/1", "/dev/stderr /proc/self/fd/2",
                           "/dev/ptmx pts/ptmx"]
    assert [l.strip() for l in lines[11:]] == ["full-is-full", "00 00", "8", "via-stdout"]


def test_linux_devices_are_created_with_mode_and_owner(bundle):
    bundle.linux["devices"] = [
        {"path": "/dev/myzero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o640,
         "uid": 7, "gid": 8},
        {"path": "/dev/sub/mynull", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o600},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
    ]
    out = run_ok(bundle, "stat -c '%F %a %t:%T %u:%g' /dev/myzero /dev/sub/mynull /dev/myfifo /dev/null; "
                         "head -c 1 /dev/sub/mynull | wc -c")
    assert out.splitlines() == ["character special file 640 1:5 7:8",
                                "character special file 666 1:3 0:0",
                                "fifo 600 0:0 0:0",
                                "character special file 600 1:3 0:0",
                                "0"], out


def test_dev_bind_mounted_from_the_host_gets_no_devices_created(bundle):
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]
    bundle.config["mounts"].append({"destination": "/dev", "type": "bind", "source": "/dev",
                                    "options": ["rbind", "nosuid", "noexec"]})
    out = run_ok(bundle, "stat -c %i /dev/null")
    assert int(out) == os.stat("/dev/null").st_ino


# ---- masked and read-only paths -------------------------------------------------------------

def test_masked_paths_read_as_empty(bundle):
    os.makedirs(os.path.join(bundle.rootfs, "secret", "dir"))
    for name in ("secret/file", "secret/dir/inner"):
        with open(os.path.join(bundle.rootfs, name), "w") as f:
            f.write("secret\n")
    bundle.linux["maskedPaths"] += ["/secret/file", "/secret/dir", "/does/not/exist"]
    out = run_ok(bundle, "cat /secret/file | wc -c; ls -A /secret/dir | wc -l; "
                         "touch /secret/dir/x 2>&1; cat /proc/timer_list | wc -c; "
                         "echo x > /secret/file; cat /secret/file | wc -c")
    lines = out.splitlines()
    assert lines[0] == "0" and lines[1] == "0"
    assert "Read-only file system" in lines[2]
    assert lines[3] == "0"  # a default masked path
    assert lines[4] == "0"
    with open(os.path.join(bundle.rootfs, "secret", "file")) as f:
        assert f.read() == "secret\n"


def test_readonly_paths_refuse_writes(bundle):
    os.makedirs(os.path.join(bundle.rootfs, "data"))
    bundle.linux["readonlyPaths"] += ["/data", "/etc/hosts"]
    bundle.config["root"]["readonly"] = False
    out = run_ok(bundle, "touch /data/x 2>&1; echo y >> /etc/hosts || echo hosts-ro; "
                         "echo 1 > /proc/sys/kernel/domainname || echo sys-ro; touch /ok && echo ok")
    assert "Read-only file system" in out
    assert "hosts-ro" in out and "sys-ro" in out
    assert out.endswith("ok\n")
    assert os.listdir(os.path.join(bundle.rootfs, "data")) == []


# ---- destinations stay inside the rootfs ----------------------------------------------------

@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir()
    (d / "host-file").write_text("host\n")
    return d


def _host_mounts_under(path) -> list:
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f if l.split()[4].startswith(str(path))]


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_a_symlink_in_the_rootfs_never_moves_a_mount_outside(bundle, outside, link):
    target = str(outside) if link == "absolute" else "../" * 12 + str(outside).lstrip("/")
    os.symlink(target, os.path.join(bundle.rootfs, "evil"))
    bundle.config["mounts"] += [
        {"destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/evil/host-file", "type": "bind", "source": "/etc/hostname",
         "options": ["bind"]},
    ]
    out = run_ok(bundle, "echo inside > /evil/sub/f; cat /evil/sub/f; grep -c ' /evil' /proc/self/mountinfo || true; "
                         f"grep ' {outside}/sub ' /proc/self/mountinfo | wc -l")
    # the mounts happened inside the rootfs, under the link's target taken as rootfs-relative
    assert out.splitlines()[0] == "inside"
    assert out.splitlines()[2] == "1"
    assert sorted(os.listdir(outside)) == ["host-file"]
    assert (outside / "host-file").read_text() == "host\n"
    assert os.path.isdir(os.path.join(bundle.rootfs, str(outside).lstrip("/"), "sub"))
    assert _host_mounts_under(outside) == []
    assert_nothing_left(bundle)


def test_a_dangling_symlink_as_a_file_destination_is_refused_or_kept_inside(bundle, outside):
    os.symlink(str(outside / "new-file"), os.path.join(bundle.rootfs, "evilfile"))
    bundle.config["mounts"].append({"destination": "/evilfile", "type": "bind",
                                    "source": "/etc/hostname", "options": ["bind"]})
    r = bundle.set_args("true").run()
    assert sorted(os.listdir(outside)) == ["host-file"]
    assert _host_mounts_under(outside) == []
    if r.returncode != 0:
        assert "mounts[" in r.stderr
    assert_nothing_left(bundle)


def test_symlinked_masked_and_readonly_paths_stay_inside(bundle, outside):
    os.symlink(str(outside), os.path.join(bundle.rootfs, "lnk"))
    bundle.linux["maskedPaths"].append("/lnk/host-file")
    bundle.linux["readonlyPaths"].append("/lnk")
    r = bundle.set_args("true").run()
    assert r.returncode == 0, r.stderr
    assert (outside / "host-file").read_text() == "host\n"
    assert _host_mounts_under(outside) == []
