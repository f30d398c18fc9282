"""`list` (listing.iter_states) reads each container's state file only as far as the list
shows (state.read_head, the file's first line) and builds no Container: what it gives must
be what `load(id).state()` gives for every status, for state files of this layout and of
the older one-line layout, and for what cannot be read."""
import io
import os

import pytest

from libcontainer import jsonio, listing, log
from libcontainer.container import list_containers
from libcontainer.state import proc_stat, read_head, state_text

ME = os.getpid()


def _cgroups(tmp_path, name: str, freezer: str | None, events: str | None) -> dict:
    """A container's recorded cgroups, its freezer (v1) and cgroup.events (v2) files
    made under tmp_path with the given contents, as Manager.state() records them."""
    paths, unified = {"cpu": f"/sys/fs/cgroup/cpu/{name}"}, ""
    if freezer is not None:
        d = tmp_path / "freezer" / name
        d.mkdir(parents=True)
        (d / "freezer.state").write_text(freezer + "\n")
        paths["freezer"] = str(d)
    if events is not None:
        d = tmp_path / "unified" / name
        d.mkdir(parents=True)
        (d / "cgroup.events").write_text(f"populated 1\nfrozen {events}\n")
        unified = str(d)
    return {"mode": "hybrid", "paths": paths, "unified": unified,
            "created": list(paths.values()), "groups": {}, "resources": {}, "devices": []}


def _state(name: str, status: str = "running", pid: int = ME, start: int | None = None,
           cgroups: dict | None = None, **extra) -> dict:
    st = {"ociVersion": "1.3.0", "id": name, "status": status, "pid": pid,
          "bundle": f"/b/{name}", "annotations": {}, "created": "2026-12-07T12:00:00.5Z",
          "owner": "0", "rootfs": f"/b/{name}/rootfs", "creator": 1, "creator_start": 1,
          "start_time": proc_stat(ME)[1] if start is None else start, **extra}
    if cgroups is not None:
        st["cgroups"] = cgroups
    return st


def _put(root, name: str, state: dict, old_layout: bool, fifo: bool = False) -> None:
    d = root / name
    d.mkdir()
    text = jsonio.dumps(state) if old_layout else state_text(state)
    (d / "state.json").write_text(text)
    if fifo:
        os.mkfifo(d / "exec.fifo")


@pytest.fixture
def warnings(monkeypatch):
    said: list = []
    monkeypatch.setattr(log, "sink", said.append)
    return said


@pytest.mark.parametrize("old_layout", [False, True], ids=["two-line", "older one-line"])
def test_every_status_as_load_state_gives_it(tmp_path, old_layout, warnings):
    root = tmp_path / "root"
    root.mkdir()
    cg = lambda name, f=None, e=None: _cgroups(tmp_path, name, f, e)  # noqa: E731
    _put(root, "a-running", _state("a-running", cgroups=cg("a", "THAWED")), old_layout)
    _put(root, "b-paused", _state("b-paused", cgroups=cg("b", "FROZEN")), old_layout)
    _put(root, "c-freezing", _state("c-freezing", cgroups=cg("c", "FREEZING")), old_layout)
    _put(root, "d-paused-v2", _state("d-paused-v2", cgroups=cg("d", None, "1")), old_layout)
    _put(root, "e-running-v2", _state("e-running-v2", cgroups=cg("e", None, "0")), old_layout)
    _put(root, "f-created", _state("f-created", "created", cgroups=cg("f", "THAWED")),
         old_layout, fifo=True)
    # start removed the fifo but died before it recorded running: running, as before
    _put(root, "g-started", _state("g-started", "created", cgroups=cg("g", "THAWED")),
         old_layout)
    # the process is gone (or its pid was taken by another: another start time)
    _put(root, "h-died", _state("h-died", start=1, cgroups=cg("h", "THAWED")), old_layout)
    _put(root, "i-no-cgroups", _state("i-no-cgroups", annotations={"k": "v"}), old_layout)
    _put(root, "j-creating", _state("j-creating", "creating", pid=0, creator=ME,
                                    creator_start=proc_stat(ME)[1]), old_layout)
    _put(root, "k-creator-died", _state("k-creator-died", "creating", pid=0), old_layout)
    (root / "l-damaged").mkdir()
    (root / "l-damaged" / "state.json").write_text("{not json")
    (root / "m-no-state").mkdir()  # left by hand
    # cut short after its head (by something else than this runtime: it renames whole files)
    (root / "l-damaged-tail").mkdir()
    text = state_text(_state("l-damaged-tail", cgroups=cg("l", "THAWED")))
    (root / "l-damaged-tail" / "state.json").write_text(text[:-40])
    (root / "n-a-file").write_text("")  # not a container
    (root / ".creating-1-2-3").mkdir()  # a create under way

    listed = list(listing.iter_states(str(root), {}))
    assert listed == [c.state({}) for c in list_containers(str(root))]
    got = {s["id"]: s["status"] for s in listed}
    assert got == {"a-running": "running", "b-paused": "paused", "c-freezing": "paused",
                   "d-paused-v2": "paused", "e-running-v2": "running",
                   "f-created": "created", "g-started": "running", "h-died": "stopped",
                   "i-no-cgroups": "running", "j-creating": "creating",
                   "k-creator-died": "stopped", "l-damaged": "stopped",
                   "l-damaged-tail": "stopped",
                   "m-no-state": "stopped"}
    assert [s["id"] for s in listed] == sorted(got)
    by_id = {s["id"]: s for s in listed}
    assert by_id["h-died"]["pid"] == 0 and by_id["a-running"]["pid"] == ME
    assert by_id["i-no-cgroups"]["annotations"] == {"k": "v"}
    assert "annotations" not in by_id["a-running"]  # runc's omitempty
    assert list(by_id["a-running"]) == ["ociVersion", "id", "pid", "status", "bundle",
                                        "rootfs", "created", "owner"]
    said = " ".join(warnings)
    assert "l-damaged" in said and "damaged" in said and "m-no-state" in said
    assert "l-damaged-tail" in said


def test_a_running_record_asks_no_fifo(tmp_path):
    """`start` unlinks the fifo before it records running, and run makes none: a container
    recorded running is never taken for created (so list need not stat the fifo)."""
    root = tmp_path / "root"
    root.mkdir()
    _put(root, "x", _state("x", "running"), old_layout=False, fifo=True)
    assert [s["status"] for s in listing.iter_states(str(root))] == ["running"]


def test_head_is_the_state_but_its_cgroups(tmp_path):
    cg = _cgroups(tmp_path, "c", "THAWED", "0")
    st = _state("c", cgroups=cg, annotations={"a,\n\"cgroups\":": "x\n"})
    text = state_text(st)
    assert text.count("\n") == 1  # the only raw newline: where the head ends
    whole = jsonio.loads(text)
    assert whole.pop("cgroups") == cg
    pause = whole.pop("pause")
    assert pause == {"paths": {"freezer": cg["paths"]["freezer"]}, "unified": cg["unified"]}
    assert whole == {k: v for k, v in st.items() if k != "cgroups"}
    head = read_head(text.encode())
    assert "cgroups" not in head and head == dict(whole, pause=pause)
    # read whole and written again: the copy is made afresh from the cgroups
    assert state_text(jsonio.loads(text)) == text
    # no cgroups: one line, no copy (nor a stale one)
    assert state_text({"pid": 1, "pause": pause}) == '{"pid":1}'
    # an older version's file: one line, read whole
    old = jsonio.dumps(st)
    assert read_head(old.encode()) == st


def test_list_of_nothing(tmp_path):
    assert list(listing.iter_states(str(tmp_path / "none"))) == []
    assert list(listing.iter_states(str(tmp_path))) == []


def test_cli_table_as_before(tmp_path, monkeypatch):
    """The table: each column as wide as its widest value, three spaces apart, no trailing
    blanks (runc's tabwriter), as the per-row join printed it before."""
    from runner import info

    root = tmp_path / "root"
    root.mkdir()
    _put(root, "short", _state("short"), old_layout=False)
    _put(root, "a-much-longer-id", _state("a-much-longer-id", pid=1, start=1), False)
    (root / "bad").mkdir()  # empty bundle, created and owner: trailing blanks go

    class Ctx:
        pass

    ctx = Ctx()
    ctx.root = str(root)
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr(log, "sink", lambda msg: None)
    assert info.cmd_list(ctx, []) == 0
    states = [c.state({}) for c in list_containers(str(root))]
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
             for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    want = "".join("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n"
                   for r in rows)
    assert out.getvalue() == want
    assert [line.split() for line in want.splitlines() if line.startswith("bad ")] == \
        [["bad", "0", "stopped"]] and "stopped\n" in want


def test_freezers_read_relative_to_their_parent(tmp_path):
    """list opens a cgroup's parent once it has seen two of its children, and reads the
    rest relative to it: the same answers as by path, and every fd closed after."""
    cgs = [_cgroups(tmp_path, f"c{i}", "FROZEN" if i % 2 else "THAWED", None)
           for i in range(4)]
    dirs: dict = {}
    got = [listing.is_paused({"cgroups": cg}, dirs) for cg in cgs]
    assert got == [False, True, False, True]
    assert got == [listing.is_paused({"cgroups": cg}) for cg in cgs]
    fd = dirs[str(tmp_path / "freezer")]
    assert fd >= 0 and os.path.samefile(f"/proc/self/fd/{fd}", tmp_path / "freezer")
    os.close(fd)
    # a parent that cannot be opened any more: by path, as before
    dirs = {str(tmp_path / "freezer"): -2}
    os.rename(tmp_path / "freezer", tmp_path / "moved")
    assert listing.is_paused({"cgroups": cgs[1]}, dirs) is False
    assert dirs == {str(tmp_path / "freezer"): -1}
    # a trailing slash has no leaf: by path
    os.rename(tmp_path / "moved", tmp_path / "freezer")
    slash = {"paths": {"freezer": cgs[1]["paths"]["freezer"] + "/"}}
    dirs = {}
    assert [listing.is_paused({"cgroups": slash}, dirs) for _ in range(3)] == [True] * 3
    assert dirs == {}


def test_list_closes_what_it_opened(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for i in range(5):
        _put(root, f"c{i}", _state(f"c{i}", cgroups=_cgroups(tmp_path, f"c{i}", "THAWED",
                                                              None)), old_layout=False)
    before = sorted(os.listdir("/proc/self/fd"))
    assert [s["status"] for s in listing.iter_states(str(root))] == ["running"] * 5
    it = listing.iter_states(str(root))
    next(it), next(it), next(it)
    it.close()  # a caller that stops early
    assert sorted(os.listdir("/proc/self/fd")) == before
