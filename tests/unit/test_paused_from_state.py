"""`state` and `list` tell paused from running by reading the freezer's file at the path
the state records, without loading the cgroup package: the same answer as
cgroups.Manager.paused() for v1 (FROZEN and FREEZING) and v2 (cgroup.events)."""
import pytest

from libcontainer import cgroups
from libcontainer.container import Container


def _state(tmp_path, v1: str | None, v2: str | None) -> dict:
    paths, unified = {}, ""
    if v1 is not None:
        (tmp_path / "freezer").mkdir()
        (tmp_path / "freezer" / "freezer.state").write_text(v1 + "\n")
        paths["freezer"] = str(tmp_path / "freezer")
    if v2 is not None:
        (tmp_path / "unified").mkdir()
        (tmp_path / "unified" / "cgroup.events").write_text(f"populated 1\nfrozen {v2}\n")
        unified = str(tmp_path / "unified")
    return {"mode": "hybrid", "paths": paths, "unified": unified, "created": []}


@pytest.mark.parametrize("v1,v2", [("THAWED", None), ("FROZEN", None), ("FREEZING", None),
                                   (None, "0"), (None, "1"), ("THAWED", "1"), (None, None)])
def test_paused_as_the_manager_says(tmp_path, v1, v2):
    st = _state(tmp_path, v1, v2)
    c = Container(None, {"cgroups": st})
    assert c._is_paused() == cgroups.Manager(st).paused()


def test_missing_files_are_not_paused(tmp_path):
    st = {"mode": "v2", "paths": {"freezer": str(tmp_path / "gone")}, "unified": ""}
    assert Container(None, {"cgroups": st})._is_paused() is False
    st = {"mode": "v2", "paths": {}, "unified": str(tmp_path / "gone")}
    assert Container(None, {"cgroups": st})._is_paused() is False
    assert Container(None, {})._is_paused() is False
