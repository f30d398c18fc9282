"""runner build and runner commit on the busybox base image: every instruction, seen in the
image config and from inside a container of the image; the cache (an unchanged rebuild runs
no RUN and gives the same image), reproducible images with --timestamp; every refusal names
file, line and instruction and leaves nothing behind; an interrupted build (SIGINT, SIGKILL)
leaves nothing a rerun trips over."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import buildkit as bk
import imagekit as kit
from conftest import RUNNER, need_root, new_id

sys.path.insert(0, kit.REPO)
from libcontainer.images import Store  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    need_root()
    work = kit.image_workdir(tmp_path_factory, "build-base")
    return bk.base_layout(work)


@pytest.fixture
def store(tmp_path, base):
    os.chmod(tmp_path, 0o755)
    path = str(tmp_path / "store")
    r = kit.runner("pull", "--storage", path, "--name", bk.BASE, f"oci:{base}:bb")
    assert r.returncode == 0, r.stderr
    yield path
    mounts = kit.unmount_left(tmp_path)
    assert not mounts, f"left mounted: {mounts}"


def leftovers(store: str) -> list:
    """What a build may leave: workspaces, temporary files, mounts, build containers."""
    found = []
    for sub in ("builds", "tmp"):
        d = os.path.join(store, sub)
        if os.path.isdir(d):
            found += [f"{sub}/{n}" for n in os.listdir(d)]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if store in line.split()[4]]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"build-marker-" in f.read():
                        found.append(f"process {pid}")
            except OSError:
                pass
    return found


def run_image(store: str, tmp_path, image: str, *args: str) -> subprocess.CompletedProcess:
    bundle = str(tmp_path / f"b-{new_id()}")
    r = kit.runner("bundle", "--storage", store, image, bundle, *args)
    assert r.returncode == 0, r.stderr
    try:
        return kit.runner("--root", str(tmp_path / "state"), "run", "--bundle", bundle, new_id())
    finally:
        kit.runner("bundle", "--storage", store, "--remove", bundle)


def config(store: str, image: str) -> dict:
    s = Store(store)
    return s.config(s.get(image))


EVERYTHING = """\
# syntax=docker/dockerfile:1
ARG GREETING=hello
FROM localhost/bb AS base
ARG GREETING
ARG V=1
ENV A=$V B="two words" \\
    C=${V:-x}${UNSET:-dflt} D=${V:+set}
LABEL org.example.l=1 "with space"="a b"
WORKDIR /app
WORKDIR sub
RUN echo "$GREETING A=$A B=$B C=$C D=$D V=$V" > f && id -u >> f && echo "$HOME" > /app/home
RUN ["/bin/sh", "-c", "echo exec-form > /app/exec"]
SHELL ["/bin/sh", "-xc"]
RUN echo shell > /app/shell
COPY a.txt d /copied/
COPY --chown=app:staff a.txt /owned
COPY --chown=1234 a.txt /owned-uid
COPY --chmod=0600 a.txt /chmodded
COPY d* /wild/
ADD arch.tar.gz /unpacked/
COPY <<EOT /app/heredoc
v=$V
EOT
RUN <<EOT
echo from-heredoc > /app/run-heredoc
EOT
USER app:staff
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
ONBUILD RUN echo triggered > /onbuild
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/sub/f"]
"""


def _context(path) -> str:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = b"in the archive\n"
        ti = tarfile.TarInfo("inner/file")
        ti.size, ti.uid, ti.mode = len(data), 42, 0o644
        t.addfile(ti, io.BytesIO(data))
    ctx = bk.write(str(path), {"Dockerfile": EVERYTHING, "a.txt": "hello\n", "d/sub/y": "y\n",
                               "d2/z": "z\n", "ignored.log": "no\n", "d/skip.log": "no\n",
                               ".dockerignore": "*.log\n**/*.log\n", "arch.tar.gz": buf.getvalue()})
    return ctx


def test_every_instruction(store, tmp_path):
    ctx = _context(tmp_path / "ctx")
    r = bk.build(store, ctx, "every:1", "--build-arg", "V=7")
    assert r.returncode == 0, r.stderr
    iid = r.stdout.strip()
    c = config(store, "every:1")
    assert Store(store).get("every:1").id == iid
    cfg = c["config"]
    assert cfg["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "A=7", "B=two words", "C=7dflt", "D=set"]
    assert cfg["Labels"] == {"org.example.l": "1", "with space": "a b"}
    assert cfg["WorkingDir"] == "/app/sub" and cfg["User"] == "app:staff"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}} and cfg["StopSignal"] == "SIGUSR1"
    assert cfg["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert cfg["OnBuild"] == ["RUN echo triggered > /onbuild"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat /app/sub/f"]
    # history: one entry per instruction of the stage, layers for RUN/COPY/ADD only
    hist = c["history"][1:]
    assert len(hist) == len([ln for ln in EVERYTHING.splitlines()[3:]
                             if ln and ln[0].isupper()]) - 2  # the heredoc bodies' ends
    layered = [h for h in hist if not h.get("empty_layer")]
    assert len(layered) == len(c["rootfs"]["diff_ids"]) - 1 == 11
    assert hist[0]["created_by"] == "/bin/sh -c #(nop) ARG GREETING"
    assert any(h["created_by"].startswith("/bin/sh -c echo \"$GREETING") for h in hist)
    assert c["created"] == hist[-1]["created"]
    # from inside: the image's own entrypoint, user, files
    out = run_image(store, tmp_path, "every:1")
    assert out.returncode == 0 and out.stdout == "hello A=7 B=two words C=7dflt D=set V=7\n0\n", out
    script = ("id; cat /app/home /app/exec /app/shell /app/heredoc /app/run-heredoc /unpacked/inner/file; "
              "ls /copied /copied/sub /wild; stat -c '%n %u:%g %a' /owned /owned-uid /chmodded "
              "/unpacked/inner/file; test ! -e /copied/skip.log && echo ignored-ok")
    out = run_image(store, tmp_path, "every:1", script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "uid=1234(app) gid=50(staff)", "/root", "exec-form", "shell", "v=7",
        "from-heredoc", "in the archive", "/copied:", "a.txt", "sub", "", "/copied/sub:", "y", "",
        "/wild:", "sub", "z", "/owned 1234:50 644", "/owned-uid 1234:1234 644",
        "/chmodded 0:0 600", "/unpacked/inner/file 42:0 644", "ignored-ok"], out.stdout


def test_onbuild_runs_in_the_child(store, tmp_path):
    bk.write(str(tmp_path / "p"), {"Dockerfile": "FROM localhost/bb\nONBUILD RUN echo trig > /t\n"
                                                 "ONBUILD ENV FROM_PARENT=1\n"})
    r = bk.build(store, str(tmp_path / "p"), "parent")
    assert r.returncode == 0, r.stderr
    bk.write(str(tmp_path / "c"), {"Dockerfile": "FROM parent\nRUN cat /t\n"})
    r = bk.build(store, str(tmp_path / "c"), "child")
    assert r.returncode == 0, r.stderr
    c = config(store, "child")
    assert "OnBuild" not in c["config"] and "FROM_PARENT=1" in c["config"]["Env"]
    assert run_image(store, tmp_path, "child", "cat", "/t").stdout == "trig\n"


def test_multistage_target_and_copy_from(store, tmp_path):
    df = ("FROM localhost/bb AS one\nRUN echo one > /one\n"
          "FROM localhost/bb AS unused\nRUN exit 3\n"
          "FROM one AS two\nRUN echo two > /two\n"
          "FROM localhost/bb\nCOPY --from=two /one /two /got/\nCOPY --from=0 /one /zero\n"
          "COPY --from=localhost/bb /etc/group /from-image\n")
    ctx = bk.write(str(tmp_path / "ctx"), {"Dockerfile": df})
    r = bk.build(store, ctx, "ms")  # the failing stage is not needed: not built
    assert r.returncode == 0, r.stderr
    out = run_image(store, tmp_path, "ms", "sh", "-c", "cat /got/one /got/two /zero; "
                    "grep -c staff /from-image")
    assert out.stdout == "one\ntwo\none\n1\n"
    r = bk.build(store, ctx, "ms-two", "--target", "two")
    assert r.returncode == 0, r.stderr
    assert run_image(store, tmp_path, "ms-two", "cat", "/two").stdout == "two\n"
    r = bk.build(store, ctx, "bad", "--target", "nope")
    assert r.returncode != 0 and "--target: no stage named 'nope'" in r.stderr


def test_cache_and_reproducible(store, tmp_path):
    ctx = bk.write(str(tmp_path / "ctx"), {
        "Dockerfile": "FROM localhost/bb\nARG X=1\nRUN echo run-$X; echo $X > /x\nCOPY f /f\n",
        "f": "one\n"})
    events = []
    from libcontainer import images

    img1 = images.build(ctx, tag="c1", storage=store, progress=events.append)
    assert any(e["event"] == "output" and b"run-1" in e["data"] for e in events)
    events.clear()
    img2 = images.build(ctx, tag="c1", storage=store, progress=events.append)
    assert img2.id == img1.id  # the same image: nothing ran
    assert not [e for e in events if e["event"] == "output"]
    assert len([e for e in events if e["event"] == "cached"]) == 2
    # a changed source reruns its COPY only; a changed build arg its RUN
    with open(os.path.join(ctx, "f"), "w") as f:
        f.write("two\n")
    events.clear()
    img3 = images.build(ctx, tag="c1", storage=store, progress=events.append)
    assert img3.id != img1.id and len([e for e in events if e["event"] == "cached"]) == 1
    events.clear()
    images.build(ctx, tag="c1", storage=store, build_args={"X": "2"}, progress=events.append)
    assert any(e["event"] == "output" and b"run-2" in e["data"] for e in events)
    # --no-cache runs it again; --timestamp makes the same image from the same inputs
    ids = set()
    for _ in range(2):
        r = bk.build(store, ctx, "repro", "--no-cache", "--timestamp", "1700000000")
        assert r.returncode == 0, r.stderr
        ids.add(r.stdout.strip())
    assert len(ids) == 1
    c = config(store, "repro")
    assert c["created"] == "2023-11-14T22:13:20Z"
    assert {h["created"] for h in c["history"][1:]} == {"2023-11-14T22:13:20Z"}
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    r = subprocess.run(RUNNER + ["build", "--storage", store, "--no-cache", ctx], env=env,
                       capture_output=True, text=True, cwd=kit.REPO)
    assert r.stdout.strip() in ids, r.stderr
    assert not leftovers(store)


def test_deletions_across_layers_and_whiteouts(store, tmp_path):
    df = ("FROM localhost/bb\nRUN mkdir -p /o/d && touch /o/d/a /o/d/b /o/keep && ln /o/keep /o/hl\n"
          "RUN rm /o/d/a && rm /bin/vi && rm -rf /o/d && mkdir /o/d && touch /o/d/new\n"
          "RUN rm /o/hl\n")
    ctx = bk.write(str(tmp_path / "ctx"), {"Dockerfile": df})
    r = bk.build(store, ctx, "del")
    assert r.returncode == 0, r.stderr
    s = Store(store)
    layers = s.get("del").layers
    second = s.layer_dir(layers[2])
    # overlay form in the store: a whiteout is a 0/0 char device, the re-made dir is opaque
    assert os.stat(os.path.join(second, "bin", "vi")).st_rdev == 0
    assert os.getxattr(os.path.join(second, "o", "d"), "trusted.overlay.opaque") == b"y"
    # and the tar written from it has the OCI forms
    import io
    import tarfile

    from libcontainer.images.layerdiff import write_tar

    buf = io.BytesIO()
    st = write_tar(second, buf)
    assert st.diff_id == layers[2]  # written again: the same bytes
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert "bin/.wh.vi" in names and "o/d/.wh..wh..opq" in names and "o/d/new" in names
    out = run_image(store, tmp_path, "del", "sh", "-c", "ls /o; ls /o/d; test ! -e /bin/vi && echo gone")
    assert out.stdout == "d\nkeep\nnew\ngone\n", out


REFUSALS = [
    ("FROM localhost/bb\nCOPY ../x /x\n", "Dockerfile:2: COPY", "outside the build context"),
    ("FROM localhost/bb\nCOPY link-out /x\n", "Dockerfile:2: COPY", "link-out points outside the build context"),
    ("FROM localhost/bb\nCOPY dir-link/passwd /x\n", "Dockerfile:2: COPY", "dir-link points outside the build context"),
    ("FROM localhost/bb\nADD http://example.com/x /x\n", "Dockerfile:2: ADD", "URL is refused"),
    ("FROM localhost/bb\nCOPY missing /x\n", "Dockerfile:2: COPY", "no such file"),
    ("FROM localhost/bb\nCOPY skip.log /x\n", "Dockerfile:2: COPY", "excluded by .dockerignore"),
    ("FROM localhost/bb\nCOPY a b /notdir\n", "Dockerfile:2: COPY", "must be a directory and end with a /"),
    ("FROM localhost/bb\nFROBNICATE x\n", "Dockerfile:2", "unknown instruction: FROBNICATE"),
    ("RUN true\nFROM localhost/bb\n", "Dockerfile:1: RUN", "only ARG may come before the first FROM"),
    ("FROM localhost/bb\nCOPY --bogus=1 a /a\n", "Dockerfile:2: COPY", "unknown flag --bogus"),
    ("FROM localhost/bb\nRUN --mount=type=cache,target=/x true\n", "Dockerfile:2: RUN", "not supported"),
    ("FROM no-such-image\n", "Dockerfile:1: FROM", "no such image"),
    ("FROM localhost/bb\nSHELL sh -c\n", "Dockerfile:2: SHELL", "JSON array"),
    ("FROM localhost/bb\nENV\n", "Dockerfile:2: ENV", "at least one argument"),
    ("FROM localhost/bb\nEXPOSE eighty\n", "Dockerfile:2: EXPOSE", "invalid port"),
    ("FROM localhost/bb\nUSER nobody-here\nRUN true\n", "Dockerfile:3: RUN", "no such user"),
    ("FROM localhost/bb\nCOPY --chown=ghost a /a\n", "Dockerfile:2: COPY", "no such user"),
    ("FROM localhost/bb\nHEALTHCHECK --interval=soon CMD true\n", "Dockerfile:2: HEALTHCHECK", "not a duration"),
    ("FROM localhost/bb\nONBUILD FROM x\n", "Dockerfile:2: ONBUILD", "not allowed"),
    ("FROM localhost/bb\nRUN <<EOF\necho\n", "Dockerfile:2: RUN", "heredoc"),
    ("FROM localhost/bb\nENV A=${B:?must_be_set}\n", "Dockerfile:2: ENV", "must_be_set"),
]


@pytest.mark.parametrize("dockerfile,where,what", REFUSALS, ids=[r[2][:24] for r in REFUSALS])
def test_refusals_name_the_line_and_leave_nothing(store, tmp_path, dockerfile, where, what):
    ctx = bk.write(str(tmp_path / "ctx"), {"Dockerfile": dockerfile, "a": "a\n", "b": "b\n",
                                           "skip.log": "x\n", ".dockerignore": "*.log\n"})
    os.symlink("/etc/passwd", os.path.join(ctx, "link-out"))
    os.symlink("../../../../../../etc", os.path.join(ctx, "dir-link"))
    before = sorted(os.listdir(os.path.join(store, "layers")))
    r = bk.build(store, ctx, "refused")
    assert r.returncode != 0
    assert where in r.stderr and what in r.stderr, r.stderr
    assert not leftovers(store)
    assert sorted(os.listdir(os.path.join(store, "layers"))) == before
    with pytest.raises(Exception):
        Store(store).get("refused")


def test_failing_run_shows_output_and_code(store, tmp_path):
    ctx = bk.write(str(tmp_path / "ctx"), {"Dockerfile": "FROM localhost/bb\nRUN true\n"
                                                         "RUN echo to-stdout; echo to-stderr >&2; exit 7\n"})
    r = bk.build(store, ctx, "fails")
    assert r.returncode != 0
    assert "Dockerfile:3: RUN" in r.stderr and "exited with code 7" in r.stderr, r.stderr
    assert "to-stdout" in r.stderr and "to-stderr" in r.stderr
    assert not leftovers(store)


def test_no_network_unless_asked(store, tmp_path):
    ctx = bk.write(str(tmp_path / "ctx"), {"Dockerfile": "FROM localhost/bb\n"
                                                         "RUN ls /sys/class/net > /nets\n"})
    assert bk.build(store, ctx, "nonet").returncode == 0
    assert run_image(store, tmp_path, "nonet", "cat", "/nets").stdout == "lo\n"
    r = bk.build(store, ctx, "hostnet", "--network", "host", "--no-cache")
    assert r.returncode == 0, r.stderr
    nets = run_image(store, tmp_path, "hostnet", "cat", "/nets").stdout.split()
    assert sorted(nets) == sorted(os.listdir("/sys/class/net"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_build_leaves_nothing_a_rerun_trips_over(store, tmp_path, sig):
    marker = "build-marker-" + new_id()
    # the marker rides in the argv of the RUN's shell while it runs
    ctx = bk.write(str(tmp_path / "ctx"), {
        "Dockerfile": f"FROM localhost/bb\nRUN touch /partial; sleep 30; echo {marker}\n"})
    p = subprocess.Popen(RUNNER + ["build", "--storage", store, "-t", "intr", ctx], cwd=kit.REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not [x for x in leftovers(store) if x.startswith("process")]:
        assert time.monotonic() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.05)
    p.send_signal(sig)
    p.communicate(timeout=30)
    assert p.returncode != 0
    if sig == signal.SIGINT:
        assert not leftovers(store)
    # the rerun (here a quicker Dockerfile) cleans what a killed build left, and works
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM localhost/bb\nRUN touch /done\n")
    r = bk.build(store, ctx, "intr")
    assert r.returncode == 0, r.stderr
    assert not leftovers(store)
    r = kit.runner("rmi", "--storage", store, "--prune")
    assert r.returncode == 0 and not leftovers(store)


def test_commit(store, tmp_path):
    state = str(tmp_path / "state")
    cid = new_id()
    bundle = str(tmp_path / "cb")
    r = kit.runner("bundle", "--storage", store, bk.BASE, bundle, "sh", "-c",
                   "echo changed > /new; rm /bin/vi; rm -rf /tmp; mkdir /tmp; "
                   "touch /tmp/x; sleep 60")
    assert r.returncode == 0, r.stderr
    try:
        # the container's stdio: not the test's pipes (it would hold them open)
        r = subprocess.run(RUNNER + ["--root", state, "run", "--detach", "--bundle", bundle, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, cwd=kit.REPO, timeout=60)
        assert r.returncode == 0
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(bundle, "rootfs", "tmp", "x")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = kit.runner("--root", state, "commit", "--storage", store, "-c", 'CMD ["cat", "/new"]',
                       "-c", "ENV COMMITTED=1", "-m", "a message", cid, "committed:1")
        assert r.returncode == 0, r.stderr
        r2 = kit.runner("--root", state, "commit", "--storage", store, "-c", "RUN true", cid, "x")
        assert r2.returncode != 0 and "RUN cannot be a --change" in r2.stderr
        st = kit.runner("--root", state, "state", cid)
        assert st.returncode == 0, st.stderr  # still there, running
        assert json.loads(kit.runner("--root", state, "state", cid).stdout)["status"] == "running"
    finally:
        kit.runner("--root", state, "delete", "--force", cid)
        kit.runner("bundle", "--storage", store, "--remove", bundle)
    c = config(store, "committed:1")
    assert c["config"]["Cmd"] == ["cat", "/new"] and "COMMITTED=1" in c["config"]["Env"]
    assert c["history"][-1]["comment"] == "a message"
    assert len(c["rootfs"]["diff_ids"]) == 2
    out = run_image(store, tmp_path, "committed:1")
    assert out.stdout == "changed\n"
    out = run_image(store, tmp_path, "committed:1", "sh", "-c",
                    "test ! -e /bin/vi && ls -A /tmp")
    assert out.stdout == "x\n", out
    r = kit.runner("commit", "--storage", store, "no-such-container", "x")
    assert r.returncode != 0


def test_scratch_escape_directive_and_arg_scope(store, tmp_path):
    df = ("# escape=`\n"
          "ARG WHO=global\n"
          "FROM scratch AS s\n"
          "COPY --from=localhost/bb /bin/busybox /bin/busybox\n"
          "ARG WHO\n"
          "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $WHO > /who; `\n"
          "     /bin/busybox mkdir /tmp\"]\n"
          "FROM s\n"
          "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo \\\"[$WHO]\\\" > /who2\"]\n"
          "ENV P=C:\\dir\n")
    ctx = bk.write(str(tmp_path / "ctx"), {"Dockerfile": df})
    r = bk.build(store, ctx, "scratchy", "--build-arg", "WHO=cli")
    assert r.returncode == 0, r.stderr
    c = config(store, "scratchy")
    assert len(c["rootfs"]["diff_ids"]) == 3  # no base layer: COPY, RUN, RUN
    assert "P=C:\\dir" in c["config"]["Env"]  # with ` as escape, \ is a plain character
    out = run_image(store, tmp_path, "scratchy", "/bin/busybox", "cat", "/who", "/who2")
    # the global ARG is seen in the stage that declares it again, not in the next one
    assert out.stdout == "cli\n[]\n", out


def test_dockerfile_from_stdin_and_containerfile(store, tmp_path):
    ctx = bk.write(str(tmp_path / "ctx"), {"Containerfile": "FROM localhost/bb\nLABEL from=cf\n"})
    r = bk.build(store, ctx, "cf")
    assert r.returncode == 0, r.stderr
    assert config(store, "cf")["config"]["Labels"] == {"from": "cf"}
    r = subprocess.run(RUNNER + ["build", "--storage", store, "-t", "stdin", "-f", "-", ctx],
                       input="FROM localhost/bb\nLABEL from=stdin\n", capture_output=True,
                       text=True, cwd=kit.REPO)
    assert r.returncode == 0, r.stderr
    assert config(store, "stdin")["config"]["Labels"] == {"from": "stdin"}


def test_progress_on_a_terminal_quiet_in_a_pipe(store, tmp_path):
    ctx = bk.write(str(tmp_path / "ctx"), {"Dockerfile": "FROM localhost/bb\nRUN echo out-of-run\n"})
    piped = bk.build(store, ctx, "prog", "--no-cache")
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    assert len(piped.stdout.split()) == 1  # the image id alone
    # on a terminal (script(1) gives the command a pty): the steps and the RUN's output
    cmd = " ".join(RUNNER + ["build", "--storage", store, "--no-cache", "-t", "prog", ctx])
    tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                         cwd=kit.REPO, timeout=120)
    assert tty.returncode == 0, tty.stdout
    assert "STEP 1/2: FROM localhost/bb" in tty.stdout and "STEP 2/2: RUN echo out-of-run" in tty.stdout
    assert "out-of-run" in tty.stdout.split("STEP 2/2")[1]
    quiet = subprocess.run(["script", "-qec", cmd + " -q", "/dev/null"], capture_output=True,
                           text=True, cwd=kit.REPO, timeout=120)
    assert "STEP" not in quiet.stdout and quiet.returncode == 0
