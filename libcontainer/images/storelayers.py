"""The store's side that makes layers: directories under tmp/ owned until placed, a layer
added from a directory (build, commit) or a tar stream (load), and placed into layers/ whole,
under its per-layer lock, only once written and synced. Store inherits it."""
from __future__ import annotations

import ctypes
import json
import os
import shutil

from . import tarsplit
from .atomic import write_atomic
from .layer import HashingReader, unpack
from .reference import check_digest
from .storetmp import _Flock


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _syncfs(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _libc().syncfs(fd)
    finally:
        os.close(fd)


class LayerStore:
    """Needs of its Store: path(), tempdir(), rootless and _owned."""

    def workdir(self, prefix: str) -> str:
        """A fresh directory under tmp/ (same filesystem as layers/, so it can be renamed in),
        owned (flock'ed, see TempDir) by this process until it is placed or removed."""
        td = self.tempdir(prefix)
        self._owned[td.path] = td
        return td.path

    def _disown(self, path: str) -> None:
        td = self._owned.pop(path, None)
        if td is not None:
            td.release(remove=False)

    def add_layer(self, diff_dir: str, timestamp: int | None = None) -> str:
        """Make `diff_dir` — a directory in overlay form (an overlay upper dir) under this
        store's tmp/, given away by the caller — a layer; → its diff id (the digest of the
        tar layerdiff writes of it). With `timestamp` every entry's mtime becomes it first.
        A layer already in the store is kept and `diff_dir` deleted."""
        from .layerdiff import set_times, strip_overlay_xattrs, write_tar

        try:
            strip_overlay_xattrs(diff_dir)
            if timestamp is not None:
                set_times(diff_dir, timestamp)
            st = write_tar(diff_dir)
        except BaseException:
            shutil.rmtree(diff_dir, ignore_errors=True)
            raise
        meta = {"diff_id": st.diff_id, "digest": st.diff_id, "size": st.size,
                "unpacked_size": st.size, "entries": st.entries}
        self._place_layer(diff_dir, meta)
        return st.diff_id

    def add_layer_tar(self, stream) -> str:
        """Unpack an (uncompressed) layer tar into the store, as a pull does; → its diff id."""
        tmp = self.workdir("layer-")
        try:
            diff = os.path.join(tmp, "diff")
            os.mkdir(diff, 0o755)
            tar = HashingReader(stream)
            split = tarsplit.Recorder(tar, os.path.join(tmp, tarsplit.NAME))
            try:
                u = unpack(split, diff, self.rootless, split)
                split.drain()
            finally:
                split.close()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            self._disown(tmp)
            raise
        meta = {"diff_id": tar.digest(), "digest": tar.digest(), "size": tar.size,
                "unpacked_size": tar.size, "entries": u.entries}
        self._place_layer(diff, meta, tmp)
        return tar.digest()

    def _place_layer(self, diff_dir: str, meta: dict, tmp: str = "") -> None:
        hexid = meta["diff_id"][7:]
        final = self.path("layers", hexid)
        with _Flock(self.path("layers", ".locks", hexid), exclusive=True):
            if os.path.isdir(final):
                shutil.rmtree(tmp or diff_dir, ignore_errors=True)
                self._disown(tmp)
                return
            try:
                if not tmp:
                    tmp = self.workdir("layer-")
                    os.rename(diff_dir, os.path.join(tmp, "diff"))
                write_atomic(os.path.join(tmp, "layer.json"), json.dumps(meta).encode())
                _syncfs(tmp)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp or diff_dir, ignore_errors=True)
                raise
            finally:
                self._disown(tmp)

    def layer_meta(self, diff_id: str) -> dict:
        with open(self.path("layers", check_digest(diff_id, "layer")[7:], "layer.json"), "rb") as f:
            return json.loads(f.read())
