"""owners.owner_name: runc's `list` shows the owner's name; a list of many containers asks
the user database once per uid (issue 21), with the same answers as one at a time."""
import pwd

from libcontainer import owners


def test_names_as_runc_shows_them():
    assert owners.owner_name("0") == pwd.getpwuid(0).pw_name
    nobody = next(u for u in range(3999999999, 3999999000, -1) if not _has(u))
    assert owners.owner_name(str(nobody)) == f"#{nobody}"  # no such user: "#uid"
    assert owners.owner_name("someone") == "someone"  # not a uid: as stored


def test_known_names_are_reused_and_filled():
    known: dict = {}
    assert owners.owner_name("0", known) == pwd.getpwuid(0).pw_name
    assert known == {"0": pwd.getpwuid(0).pw_name}
    known["0"] = "cached"  # a second container of the same owner: no lookup
    assert owners.owner_name("0", known) == "cached"


def _has(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False
