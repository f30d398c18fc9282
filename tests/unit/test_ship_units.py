"""Ship units (no root): tar-split records give back the exact tar stream of a layer
(long names, pax records, xattrs, hard links, empty files, whiteouts, GNU and ustar headers);
the gzip blob is a function of the stream; containers-auth.json lookup order and key forms,
and errors naming the file and field; push destination checks."""
from __future__ import annotations

import base64
import gzip
import io
import json
import os
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainer.errors import InvalidArgument
from libcontainer.images import auth, export
from libcontainer.images.errors import ImageError
from libcontainer.images.layer import HashingReader, unpack
from libcontainer.images.tarsplit import NAME, Reassembled, Recorder


def _tar(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, data, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = 1700000000, 0o644
            ti.pax_headers = extra
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, data.decode()
                t.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data.decode()
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _roundtrip(tmp_path, data: bytes) -> bytes:
    layer = tmp_path / "layer"
    (layer / "diff").mkdir(parents=True)
    tar = HashingReader(io.BytesIO(data))
    rec = Recorder(tar, str(layer / NAME))
    unpack(rec, str(layer / "diff"), rootless=True, split=rec)
    rec.drain()
    rec.close()
    out = io.BytesIO()
    with Reassembled(str(layer), "test layer") as r:
        while True:
            chunk = r.read(7000)
            if not chunk:
                break
            out.write(chunk)
    assert r.digest() == tar.digest()
    return out.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tarsplit_gives_the_same_stream(tmp_path, fmt):
    long = "d/" + "x" * 90 + "/" + "y" * 80 if fmt != tarfile.USTAR_FORMAT else "d/long"
    entries = [("d/", "dir", b"", {}), ("d/empty", "file", b"", {}),
               ("d/big", "file", os.urandom(3 << 20), {}), ("d/small", "file", b"hi\n", {}),
               ("d/hl", "link", b"d/small", {}), ("d/sym", "sym", b"small", {}),
               ("d/.wh.gone", "file", b"", {}), ("d/.wh..wh..opq", "file", b"", {})]
    if fmt != tarfile.USTAR_FORMAT:
        entries.append((long, "file", b"long name\n", {}))
    if fmt == tarfile.PAX_FORMAT:
        entries.append(("d/x", "file", b"xattr\n", {"SCHILY.xattr.user.k": "v", "comment": "é"}))
    data = _tar(entries, fmt)
    assert _roundtrip(tmp_path, data) == data


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[a-z]{1,12}", fullmatch=True), st.binary(max_size=3000)),
                min_size=1, max_size=12, unique_by=lambda e: e[0]))
def test_tarsplit_any_files(tmp_path_factory, files):
    tmp = tmp_path_factory.mktemp("ts")
    data = _tar([("f/", "dir", b"", {})] + [(f"f/{n}", "file", d, {}) for n, d in files])
    assert _roundtrip(tmp, data) == data


def test_a_changed_file_is_caught(tmp_path):
    data = _tar([("a", "file", b"hello\n", {})])
    _roundtrip(tmp_path, data)
    (tmp_path / "layer" / "diff" / "a").write_bytes(b"hell")
    with Reassembled(str(tmp_path / "layer"), "layer L") as r, pytest.raises(ImageError, match="shorter"):
        while r.read(1 << 20):
            pass
    os.unlink(tmp_path / "layer" / NAME)
    with pytest.raises(ImageError, match="no tar-split record"):
        Reassembled(str(tmp_path / "layer"), "layer L")


def test_gzip_blob_is_a_function_of_the_stream():
    data = os.urandom(1 << 20) + b"a" * (3 << 20) + os.urandom(5)
    blobs = set()
    for piece in (1, 4096, 300000, len(data)):
        c = export._Compressor("gzip")
        out = b"".join(c.compress(data[i:i + piece]) for i in range(0, len(data), piece)) + c.flush()
        c.close()
        blobs.add(out)
    (blob,) = blobs
    assert gzip.decompress(blob) == data
    assert len(blob) < len(data) // 2  # the compressible part was compressed


def test_format_checks_name_the_flag():
    with pytest.raises(InvalidArgument, match="--format: 'v1'"):
        export.check_format("v1", "gzip")
    with pytest.raises(InvalidArgument, match="--compression-format: 'xz'"):
        export.check_format("oci", "xz")
    with pytest.raises(InvalidArgument, match="--format oci"):
        export.check_format("v2s2", "zstd")


# ---- containers-auth.json -----------------------------------------------------------------

def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_auth_lookup_order_and_keys(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".config" / "containers").mkdir(parents=True)
    xdg = tmp_path / "xdg"
    (xdg / "containers").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hub:1")},
        "reg.example:5000": {"auth": _b64("docker:2")}}}))
    assert auth.lookup("docker.io", "library/alpine") == "hub:1"
    assert auth.lookup("reg.example:5000", "a/b") == "docker:2"
    # containers' files come first; the longest namespace wins
    (home / ".config" / "containers" / "auth.json").write_text(json.dumps({"auths": {
        "reg.example:5000": {"auth": _b64("cfg:3")},
        "reg.example:5000/team": {"auth": _b64("team:4")}}}))
    assert auth.lookup("reg.example:5000", "a/b") == "cfg:3"
    assert auth.lookup("reg.example:5000", "team/app") == "team:4"
    assert auth.lookup("reg.example:5000", "teamwork/app") == "cfg:3"
    path = auth.store_creds("reg.example:5000", "me", "pw")
    assert path == str(xdg / "containers" / "auth.json")
    assert auth.lookup("reg.example:5000", "a/b") == "me:pw"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert auth.remove_creds("reg.example:5000") and not auth.remove_creds("reg.example:5000")
    assert auth.lookup("reg.example:5000", "a/b") == "cfg:3"
    # REGISTRY_AUTH_FILE: that file alone
    only = tmp_path / "only.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(only))
    assert auth.lookup("reg.example:5000", "a/b") == ""
    assert auth.auth_files() == [str(only)]


def test_auth_errors_name_the_file_and_field(tmp_path, monkeypatch):
    f = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(f))
    f.write_text("{nope")
    with pytest.raises(ImageError, match=f"auth file {f}: not valid JSON"):
        auth.lookup("h:1")
    f.write_text(json.dumps({"auths": {"h:1": {"auth": _b64("nocolon")}}}))
    with pytest.raises(ImageError, match=r"auths\['h:1'\]\.auth has no ':'"):
        auth.lookup("h:1")
    with pytest.raises(InvalidArgument, match="registry 'https://h'"):
        auth.store_creds("https://h", "u", "p")
    with pytest.raises(InvalidArgument, match="--username"):
        auth.store_creds("h:1", "", "p")
