"""shim._ops packs a plan's ops into one buffer with `_struct` (issue 21: setting twelve
fields an op through cffi was ~0.3 ms of a start). What the C side reads must be what the
field-by-field path would have given it, for every kind of value an op carries."""
from libcontainer import ops as P
from libcontainer import shim
from libcontainer._shim import ffi


SAMPLE = [
    P.op(P.MOUNT, "/proc", "proc", "proc", None, 14, 0),
    P.op(P.MOUNT, "/dev", "tmpfs", "tmpfs", "mode=755,size=65536k", 16777218, 1 << 18),
    P.op(P.WRITE, "/proc/self/oom_score_adj", data="0", flags=P.WRITE_EARLY),
    P.op(P.SECCOMP, data=b"\x06\x00\x00\x00\x00\x00\xff\x7f" * 3, a=1, b=2),
    P.op(P.RLIMIT, a=7, b=2**64 - 1, c=2**64 - 1),  # RLIM_INFINITY: the top of an unsigned
    P.op(P.SYMLINK, "/dev/fd", "/proc/self/fd"),
    P.op(P.USER, a=1000, b=1000, c=0, d=2**32 - 1, e=5),
    P.op(P.EXEC),
]
FIELDS = ("kind", "flags", "pflags", "a", "b", "c", "d", "e", "len")


def _read(o) -> dict:
    out = {k: getattr(o, k) for k in FIELDS}
    for k in ("path", "src", "fstype"):
        p = getattr(o, k)
        out[k] = None if p == ffi.NULL else ffi.string(p)
    if o.len:
        out["data"] = bytes(ffi.buffer(o.data, o.len))
    else:
        out["data"] = None if o.data == ffi.NULL else ffi.string(o.data)
    return out


def _by_field(keep: list, plan_ops: list):
    arr = ffi.new("struct rc_op[]", len(plan_ops))
    for i, o in enumerate(plan_ops):
        shim._set_op(keep, arr[i], *o)
    return arr


def test_layout_matches_the_compiled_struct():
    assert shim._OP is not None, "struct rc_op changed: update shim._op_layout's fields"
    assert shim._OP.size == ffi.sizeof("struct rc_op")


def test_packed_ops_read_back_as_the_field_by_field_ones():
    keep: list = []
    packed = shim._ops(keep, SAMPLE)
    fields = _by_field(keep, SAMPLE)
    for i in range(len(SAMPLE)):
        assert _read(packed[i]) == _read(fields[i]), SAMPLE[i]


def test_strings_are_shared_and_kept_alive():
    keep: list = []
    packed = shim._ops(keep, SAMPLE[:2])
    # every non-NULL pointer of the packed ops points into a buffer the caller keeps
    kept = {int(ffi.cast("uintptr_t", b)) for b in _flat(keep)}
    for i in range(2):
        for k in ("path", "src", "fstype", "data"):
            p = getattr(packed[i], k)
            if p != ffi.NULL:
                assert int(ffi.cast("uintptr_t", p)) in kept


def _flat(keep: list) -> list:
    """The C buffers in `keep` (an op's packed once are kept as its list of them)."""
    out = []
    for k in keep:
        out += _flat(k) if isinstance(k, list) else [k]
    return out


def test_an_op_is_packed_once_and_its_strings_outlive_the_string_cache():
    shim._packed.clear()
    first: list = []
    a = shim._ops(first, SAMPLE)
    shim._cstrs.clear()  # (as when it fills): the packed ops keep their own strings
    again: list = []
    b = shim._ops(again, SAMPLE)
    assert bytes(ffi.buffer(a)) == bytes(ffi.buffer(b))
    for i in range(len(SAMPLE)):
        assert _read(b[i]) == _read(a[i])
    # an equal op that is another tuple is packed on its own (the cache is by identity)
    copy = [tuple(list(o)) for o in SAMPLE[:1]]
    assert shim._packed.get(id(copy[0])) is None
    shim._ops([], copy)
    assert shim._packed[id(copy[0])][0] is copy[0]


def test_no_ops():
    assert len(shim._ops([], [])) == 0
